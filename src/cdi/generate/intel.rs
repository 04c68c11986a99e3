//! Intel: DRM cards whose PCI device has Intel's vendor id (`/sys/class/drm/card*/device/vendor`
//! is `0x8086`), each with its card node and the render node of the same device. Devices are
//! named by card (`card0`), as Intel's plugin names them, plus `all`.

use super::{
    GenerateError, Generated, Host, PCI_ANNOTATION, Vendor, by_number, dir_names, existing_node,
    new_spec, read_optional, with_all,
};
use crate::cdi::spec::{ContainerEdits, Device};

/// Intel's PCI vendor id as sysfs writes it.
pub const VENDOR_ID: &str = "0x8086";

/// One Intel DRM card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// `card0`.
    pub card: String,
    /// `renderD128`, when the device has one.
    pub render: Option<String>,
    pub bus: Option<String>,
}

/// The Intel cards, by card number.
pub fn cards(host: &Host) -> Result<Vec<Card>, GenerateError> {
    let dir = host.sysfs.join("class/drm");
    let mut names: Vec<String> = dir_names(&dir)?
        .into_iter()
        // `card0-DP-1` and friends are connectors, not cards.
        .filter(|n| {
            n.strip_prefix("card")
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    by_number(&mut names);
    let mut cards = Vec::new();
    for card in names {
        let device = dir.join(&card).join("device");
        let vendor = read_optional(&device.join("vendor"))?.unwrap_or_default();
        if vendor.trim() != VENDOR_ID {
            continue;
        }
        let render = dir_names(&device.join("drm"))?
            .into_iter()
            .find(|n| n.starts_with("renderD"));
        let bus = std::fs::canonicalize(&device)
            .ok()
            .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()));
        cards.push(Card { card, render, bus });
    }
    if cards.is_empty() {
        return Err(GenerateError::NoGpu {
            vendor: "Intel",
            why: format!("no card in {} has vendor {VENDOR_ID}", dir.display()),
        });
    }
    Ok(cards)
}

/// The Intel spec.
pub fn generate(host: &Host) -> Result<Generated, GenerateError> {
    let mut warnings = Vec::new();
    let cards = cards(host)?;
    let mut spec = new_spec(crate::request::INTEL_KIND);
    let mut all = Vec::new();
    for card in &cards {
        let Some(card_node) = existing_node(host, &format!("dri/{}", card.card), &mut warnings)
        else {
            continue;
        };
        let mut nodes = vec![card_node];
        if let Some(render) = &card.render {
            nodes.extend(existing_node(host, &format!("dri/{render}"), &mut warnings));
        }
        all.extend(nodes.iter().cloned());
        let annotations = card
            .bus
            .iter()
            .map(|bus| (PCI_ANNOTATION.to_owned(), bus.clone()))
            .collect();
        spec.devices.push(Device {
            name: card.card.clone(),
            annotations,
            container_edits: ContainerEdits {
                device_nodes: nodes,
                ..ContainerEdits::default()
            },
        });
    }
    let missing = format!("no card node under {}", host.dev.display());
    with_all(&mut spec, all, "Intel", missing, &warnings)?;
    Ok(Generated {
        vendor: Vendor::Intel,
        spec,
        warnings,
    })
}
