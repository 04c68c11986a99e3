//! The distributed-training env the `io.cdirun.distributed.*` annotations ask for: backend,
//! rendezvous address and port, world size and ranks, validated.

use libcontainer::oci_spec::runtime::Spec;

use super::{RequestError, annotation, annotations, bad, check_keys};

/// `io.cdirun.distributed.*`: the distributed-training env.
pub const DIST_PREFIX: &str = "io.cdirun.distributed.";
pub const DIST_BACKEND: &str = "io.cdirun.distributed.backend";
pub const DIST_MASTER_ADDR: &str = "io.cdirun.distributed.master-addr";
pub const DIST_MASTER_PORT: &str = "io.cdirun.distributed.master-port";
pub const DIST_WORLD_SIZE: &str = "io.cdirun.distributed.world-size";
pub const DIST_RANK: &str = "io.cdirun.distributed.rank";
pub const DIST_LOCAL_RANK: &str = "io.cdirun.distributed.local-rank";

/// The keys cdirun knows under [`DIST_PREFIX`]; `check_keys` refuses others.
pub(super) const DIST_KEYS: [&str; 6] = [
    DIST_BACKEND,
    DIST_MASTER_ADDR,
    DIST_MASTER_PORT,
    DIST_WORLD_SIZE,
    DIST_RANK,
    DIST_LOCAL_RANK,
];

/// Backends the distributed annotations accept.
pub const BACKENDS: [&str; 3] = ["nccl", "gloo", "mpi"];
/// The default rendezvous port (PyTorch's).
pub const DEFAULT_MASTER_PORT: u16 = 29500;

/// The distributed-training env the `io.cdirun.distributed.*` annotations ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distributed {
    pub backend: String,
    pub master_addr: String,
    pub master_port: u16,
    pub world_size: u32,
    pub rank: u32,
    pub local_rank: u32,
}

/// The distributed env, `None` when no `io.cdirun.distributed.*` annotation is set.
pub fn distributed_from_spec(spec: &Spec) -> Result<Option<Distributed>, RequestError> {
    check_keys(spec)?;
    if !annotations(spec)
        .iter()
        .any(|(k, _)| k.starts_with(DIST_PREFIX))
    {
        return Ok(None);
    }
    let number = |key: &'static str, default: u32| -> Result<u32, RequestError> {
        match annotation(spec, key) {
            None => Ok(default),
            Some(text) => text
                .parse::<u32>()
                .map_err(|_| bad(key, text, "use a whole number")),
        }
    };
    let backend = annotation(spec, DIST_BACKEND).unwrap_or("nccl").to_owned();
    if !BACKENDS.contains(&backend.as_str()) {
        return Err(bad(
            DIST_BACKEND,
            &backend,
            format!("use one of {}", BACKENDS.join(", ")),
        ));
    }
    let master_addr = match annotation(spec, DIST_MASTER_ADDR) {
        Some("") => return Err(bad(DIST_MASTER_ADDR, "", "name a host or address")),
        Some(addr) => addr.to_owned(),
        None => spec
            .hostname()
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned()),
    };
    let master_port = match annotation(spec, DIST_MASTER_PORT) {
        None => DEFAULT_MASTER_PORT,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(bad(DIST_MASTER_PORT, text, "use a port from 1 to 65535")),
        },
    };
    let world_size = number(DIST_WORLD_SIZE, 1)?;
    if world_size == 0 {
        return Err(bad(DIST_WORLD_SIZE, "0", "use at least 1"));
    }
    let rank = number(DIST_RANK, 0)?;
    if rank >= world_size {
        return Err(bad(
            DIST_RANK,
            &rank.to_string(),
            format!("must be below the world size {world_size}"),
        ));
    }
    let local_rank = number(DIST_LOCAL_RANK, 0)?;
    if local_rank >= world_size {
        return Err(bad(
            DIST_LOCAL_RANK,
            &local_rank.to_string(),
            format!("must be below the world size {world_size}"),
        ));
    }
    Ok(Some(Distributed {
        backend,
        master_addr,
        master_port,
        world_size,
        rank,
        local_rank,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::annotated as spec;

    #[test]
    fn distributed_table() {
        let d = |backend: &str, addr: &str, port, world, rank, local| Distributed {
            backend: backend.into(),
            master_addr: addr.into(),
            master_port: port,
            world_size: world,
            rank,
            local_rank: local,
        };
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
            Option<Distributed>,
        );
        let cases: [Case; 4] = [
            (&[], None, None),
            (
                &[(DIST_WORLD_SIZE, "1")],
                None,
                Some(d("nccl", "localhost", 29500, 1, 0, 0)),
            ),
            (
                &[(DIST_RANK, "0")],
                Some("node-a"),
                Some(d("nccl", "node-a", 29500, 1, 0, 0)),
            ),
            (
                &[
                    (DIST_BACKEND, "gloo"),
                    (DIST_MASTER_ADDR, "10.0.0.1"),
                    (DIST_MASTER_PORT, "1234"),
                    (DIST_WORLD_SIZE, "8"),
                    (DIST_RANK, "5"),
                    (DIST_LOCAL_RANK, "1"),
                ],
                Some("ignored"),
                Some(d("gloo", "10.0.0.1", 1234, 8, 5, 1)),
            ),
        ];
        for (annotations, hostname, want) in cases {
            let mut s = spec(annotations);
            s.set_hostname(hostname.map(str::to_owned));
            assert_eq!(distributed_from_spec(&s).unwrap(), want, "{annotations:?}");
        }
        let bad: [(&[(&str, &str)], &str); 6] = [
            (&[(DIST_BACKEND, "tcp")], "\"tcp\""),
            (&[(DIST_MASTER_PORT, "0")], DIST_MASTER_PORT),
            (&[(DIST_MASTER_PORT, "70000")], DIST_MASTER_PORT),
            (&[(DIST_WORLD_SIZE, "0")], DIST_WORLD_SIZE),
            (
                &[(DIST_WORLD_SIZE, "2"), (DIST_RANK, "2")],
                "below the world size 2",
            ),
            (
                &[("io.cdirun.distributed.size", "2")],
                "io.cdirun.distributed.size",
            ),
        ];
        for (annotations, want) in bad {
            let err = distributed_from_spec(&spec(annotations)).unwrap_err();
            assert!(err.to_string().contains(want), "{annotations:?}: {err}");
        }
    }
}
