//! The GPU request: the `io.cdirun.gpu.*` annotations (how many GPUs, of which vendor and
//! model, shared how) and the `io.cdirun.mps.*` limits for MPS sharing, validated.

use libcontainer::oci_spec::runtime::Spec;

use super::vendor_env::{AMD_KIND, NVIDIA_KIND};
use super::{RequestError, annotation, annotations, bad, check_keys};
use crate::config::Config;

/// The CDI kind of Intel GPUs.
pub const INTEL_KIND: &str = "intel.cdi.k8s.io/gpu";

/// `io.cdirun.gpu.*`: the GPU request.
pub const GPU_PREFIX: &str = "io.cdirun.gpu.";
pub const GPU_COUNT: &str = "io.cdirun.gpu.count";
pub const GPU_VENDOR: &str = "io.cdirun.gpu.vendor";
pub const GPU_MODEL: &str = "io.cdirun.gpu.model";
pub const GPU_SHARING: &str = "io.cdirun.gpu.sharing";
/// Written by the GPU edit: the devices it allocated, so a later pass recognises its own env.
pub const GPU_ALLOCATED: &str = "io.cdirun.gpu.allocated";
/// `io.cdirun.mps.*`: per-container MPS limits.
pub const MPS_PREFIX: &str = "io.cdirun.mps.";
pub const MPS_THREAD_PERCENTAGE: &str = "io.cdirun.mps.active-thread-percentage";
pub const MPS_MEM_LIMIT: &str = "io.cdirun.mps.pinned-device-mem-limit";

/// The keys cdirun knows under [`GPU_PREFIX`]; `check_keys` refuses others.
pub(super) const GPU_KEYS: [&str; 5] =
    [GPU_COUNT, GPU_VENDOR, GPU_MODEL, GPU_SHARING, GPU_ALLOCATED];
/// The keys cdirun knows under [`MPS_PREFIX`].
pub(super) const MPS_KEYS: [&str; 2] = [MPS_THREAD_PERCENTAGE, MPS_MEM_LIMIT];

/// A GPU vendor cdirun can allocate for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Nvidia,
    Amd,
    Intel,
}

impl Vendor {
    /// `nvidia` | `amd` | `intel`; any other vendor is refused as not supported on Linux.
    pub fn parse(name: &str) -> Result<Self, RequestError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "nvidia" => Ok(Vendor::Nvidia),
            "amd" => Ok(Vendor::Amd),
            "intel" => Ok(Vendor::Intel),
            _ => Err(RequestError::Vendor {
                vendor: name.to_owned(),
            }),
        }
    }

    /// The CDI kind whose devices are this vendor's GPUs.
    pub fn kind(self) -> &'static str {
        match self {
            Vendor::Nvidia => NVIDIA_KIND,
            Vendor::Amd => AMD_KIND,
            Vendor::Intel => INTEL_KIND,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
            Vendor::Intel => "intel",
        }
    }
}

/// How many GPUs a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    N(usize),
    All,
}

/// Whether the GPUs are the container's alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    Exclusive,
    Mps,
    TimeSlice,
    /// A plain CDI or env request's hold in the GPU ledger: shared with the shared modes and
    /// other plain requests, never with an exclusive holder. No annotation asks for it.
    Plain,
}

impl Sharing {
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Exclusive => "exclusive",
            Sharing::Mps => "mps",
            Sharing::TimeSlice => "time-slice",
            Sharing::Plain => "plain",
        }
    }
}

/// The `io.cdirun.gpu.*` and `io.cdirun.mps.*` annotations, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequest {
    /// `None`: the GPUs named through CDI, or one when none is.
    pub count: Option<Count>,
    pub vendor: Vendor,
    pub model: Option<String>,
    pub sharing: Sharing,
    /// CUDA_MPS_ACTIVE_THREAD_PERCENTAGE, as written (a number in (0, 100]).
    pub thread_percentage: Option<String>,
    /// CUDA_MPS_PINNED_DEVICE_MEM_LIMIT in MPS's own syntax (`0=1G,1=512M`).
    pub mem_limit: Option<String>,
}

/// The first (by name) `io.cdirun.gpu.*` or `io.cdirun.mps.*` annotation that asks for GPUs;
/// the allocation marker cdirun writes itself asks for nothing.
pub(super) fn gpu_key(spec: &Spec) -> Option<&str> {
    annotations(spec)
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| (k.starts_with(GPU_PREFIX) && *k != GPU_ALLOCATED) || k.starts_with(MPS_PREFIX))
}

/// The GPU request, `None` when no `io.cdirun.gpu.*` or `io.cdirun.mps.*` annotation is set.
pub fn gpu_from_spec(spec: &Spec, config: &Config) -> Result<Option<GpuRequest>, RequestError> {
    check_keys(spec)?;
    if gpu_key(spec).is_none() {
        return Ok(None);
    }
    let count = match annotation(spec, GPU_COUNT) {
        None => None,
        Some("all") => Some(Count::All),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Some(Count::N(n)),
            _ => return Err(bad(GPU_COUNT, text, "use a positive number or `all`")),
        },
    };
    let vendor = Vendor::parse(annotation(spec, GPU_VENDOR).unwrap_or(&config.gpu.default_vendor))?;
    let model = annotation(spec, GPU_MODEL).map(str::to_owned);
    if model.as_deref() == Some("") {
        return Err(bad(
            GPU_MODEL,
            "",
            "name a model, or leave the annotation out",
        ));
    }
    let sharing = match annotation(spec, GPU_SHARING) {
        None | Some("exclusive") => Sharing::Exclusive,
        Some("mps") => Sharing::Mps,
        Some("time-slice") => Sharing::TimeSlice,
        Some(other) => return Err(bad(GPU_SHARING, other, "use exclusive, mps or time-slice")),
    };
    if sharing != Sharing::Exclusive && vendor != Vendor::Nvidia {
        return Err(bad(
            GPU_SHARING,
            sharing.as_str(),
            format!(
                "{} sharing is NVIDIA-only; vendor is {}",
                sharing.as_str(),
                vendor.name()
            ),
        ));
    }
    let thread_percentage = annotation(spec, MPS_THREAD_PERCENTAGE).map(str::to_owned);
    if let Some(text) = &thread_percentage {
        match text.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => {}
            _ => {
                return Err(bad(
                    MPS_THREAD_PERCENTAGE,
                    text,
                    "use a number above 0 and at most 100",
                ));
            }
        }
    }
    let mem_limit = annotation(spec, MPS_MEM_LIMIT).map(str::to_owned);
    if let Some(text) = &mem_limit {
        check_mem_limit(text).map_err(|why| bad(MPS_MEM_LIMIT, text, why))?;
    }
    if sharing != Sharing::Mps {
        for (key, value) in [
            (MPS_THREAD_PERCENTAGE, &thread_percentage),
            (MPS_MEM_LIMIT, &mem_limit),
        ] {
            if let Some(value) = value {
                return Err(bad(key, value, format!("needs {GPU_SHARING}=mps")));
            }
        }
    }
    Ok(Some(GpuRequest {
        count,
        vendor,
        model,
        sharing,
        thread_percentage,
        mem_limit,
    }))
}

/// MPS's pinned memory syntax: comma-separated `<device index>=<amount>[K|M|G]`.
fn check_mem_limit(text: &str) -> Result<(), String> {
    for entry in text.split(',') {
        let (device, amount) = entry
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("entry {entry:?} is not <device index>=<amount>, e.g. 0=1G"))?;
        if device.parse::<u32>().is_err() {
            return Err(format!("device {device:?} in {entry:?} is not an index"));
        }
        let digits = amount.trim_end_matches(['K', 'M', 'G', 'k', 'm', 'g']);
        let suffix = amount.len() - digits.len();
        if digits.is_empty() || suffix > 1 || digits.parse::<u64>().map_or(true, |n| n == 0) {
            return Err(format!(
                "amount {amount:?} in {entry:?} is not a positive number with an optional K, M or G"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::annotated as spec;

    #[test]
    fn gpu_request_table() {
        let config = Config::default();
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<(Option<Count>, Vendor, Sharing)>,
        );
        let cases: [Case; 7] = [
            ("nothing", &[("other", "x")], None),
            (
                "sharing alone: vendor from config, count open",
                &[(GPU_SHARING, "exclusive")],
                Some((None, Vendor::Nvidia, Sharing::Exclusive)),
            ),
            (
                "count and vendor",
                &[(GPU_COUNT, "2"), (GPU_VENDOR, "AMD")],
                Some((Some(Count::N(2)), Vendor::Amd, Sharing::Exclusive)),
            ),
            (
                "all intel",
                &[(GPU_COUNT, "all"), (GPU_VENDOR, "intel")],
                Some((Some(Count::All), Vendor::Intel, Sharing::Exclusive)),
            ),
            (
                "mps with limits",
                &[
                    (GPU_SHARING, "mps"),
                    (MPS_THREAD_PERCENTAGE, "50"),
                    (MPS_MEM_LIMIT, "0=1G,1=512M"),
                ],
                Some((None, Vendor::Nvidia, Sharing::Mps)),
            ),
            (
                "time-slice",
                &[(GPU_SHARING, "time-slice"), (GPU_COUNT, "1")],
                Some((Some(Count::N(1)), Vendor::Nvidia, Sharing::TimeSlice)),
            ),
            (
                "only the allocation marker is no request",
                &[(GPU_ALLOCATED, "nvidia.com/gpu=0")],
                None,
            ),
        ];
        for (name, annotations, want) in cases {
            let got = gpu_from_spec(&spec(annotations), &config)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .map(|r| (r.count, r.vendor, r.sharing));
            assert_eq!(got, want, "{name}");
        }
        let mut amd = Config::default();
        amd.gpu.default_vendor = "amd".into();
        let got = gpu_from_spec(&spec(&[(GPU_COUNT, "1")]), &amd)
            .unwrap()
            .unwrap();
        assert_eq!(got.vendor, Vendor::Amd);
    }

    #[test]
    fn bad_gpu_requests_name_the_key_and_value() {
        let config = Config::default();
        let cases: [(&[(&str, &str)], &str); 12] = [
            (&[(GPU_COUNT, "0")], "io.cdirun.gpu.count=\"0\""),
            (&[(GPU_COUNT, "two")], "io.cdirun.gpu.count=\"two\""),
            (&[(GPU_VENDOR, "apple")], "\"apple\""),
            (&[(GPU_SHARING, "fair")], "\"fair\""),
            (&[(GPU_MODEL, "")], GPU_MODEL),
            (&[("io.cdirun.gpu.cuont", "1")], "io.cdirun.gpu.cuont"),
            (&[(GPU_VENDOR, "amd"), (GPU_SHARING, "mps")], "NVIDIA-only"),
            (
                &[(GPU_SHARING, "mps"), (MPS_THREAD_PERCENTAGE, "0")],
                MPS_THREAD_PERCENTAGE,
            ),
            (
                &[(GPU_SHARING, "mps"), (MPS_THREAD_PERCENTAGE, "101")],
                MPS_THREAD_PERCENTAGE,
            ),
            (&[(GPU_SHARING, "mps"), (MPS_MEM_LIMIT, "1G")], "0=1G"),
            (&[(GPU_SHARING, "mps"), (MPS_MEM_LIMIT, "0=1T")], "\"1T\""),
            (
                &[(MPS_THREAD_PERCENTAGE, "50")],
                "needs io.cdirun.gpu.sharing=mps",
            ),
        ];
        for (annotations, want) in cases {
            let err = gpu_from_spec(&spec(annotations), &config).unwrap_err();
            assert!(err.to_string().contains(want), "{annotations:?}: {err}");
        }
        let err = gpu_from_spec(&spec(&[(GPU_VENDOR, "apple")]), &config).unwrap_err();
        assert!(err.to_string().contains("not supported on Linux"), "{err}");
    }
}
