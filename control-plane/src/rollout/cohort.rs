//! Which devices enter a rollout stage: a stable order (canary-labelled devices first,
//! then by a hash of the device id), so a stage's cohort is reproducible.

use sha2::{Digest, Sha256};

use crate::store::DeviceRecord;

/// The order devices enter stages in.
pub fn order<'a>(devices: impl IntoIterator<Item = &'a DeviceRecord>) -> Vec<String> {
    let mut keyed: Vec<(bool, [u8; 32], &str)> = devices
        .into_iter()
        .map(|device| {
            let canary = device.labels.get("canary").is_some_and(|v| v == "true");
            (
                !canary,
                Sha256::digest(device.id.as_bytes()).into(),
                device.id.as_str(),
            )
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, _, id)| id.to_owned()).collect()
}

/// How many devices a stage of `percent` covers out of `total` (at least one).
pub fn stage_size(percent: u32, total: usize) -> usize {
    ((u64::from(percent) * total as u64).div_ceil(100) as usize).clamp(1.min(total), total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn device(id: &str, canary: bool) -> DeviceRecord {
        let mut labels = BTreeMap::new();
        if canary {
            labels.insert("canary".to_owned(), "true".to_owned());
        }
        DeviceRecord {
            id: id.into(),
            group: "g".into(),
            labels,
            credential_hash: String::new(),
            created_at: String::new(),
            seq: 0,
            desired: None,
            assignment: None,
            deployment_id: None,
            reported: None,
            online: true,
            status_epoch: None,
            last_seen: None,
            revoked_at: None,
        }
    }

    #[test]
    fn canaries_come_first_and_the_order_is_stable() {
        let devices: Vec<DeviceRecord> =
            (0..10).map(|i| device(&format!("d{i}"), i == 7)).collect();
        let first = order(&devices);
        assert_eq!(first[0], "d7");
        let mut reversed = devices.clone();
        reversed.reverse();
        assert_eq!(order(&reversed), first);
        assert_eq!(stage_size(10, 20), 2);
        assert_eq!(stage_size(5, 20), 1);
        assert_eq!(stage_size(1, 20), 1);
        assert_eq!(stage_size(100, 20), 20);
        assert_eq!(stage_size(50, 3), 2);
    }
}
