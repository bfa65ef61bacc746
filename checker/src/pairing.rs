//! The pairing of model frame ids with physical frames, learned while comparing: the model
//! names frames by id, the vmm (or the guest's MMU) by address, and a frame must keep one
//! partner for as long as the model holds it.

use std::collections::BTreeMap;

/// Model frame ids and physical frame addresses, each paired with at most one of the other.
#[derive(Clone, Debug, Default)]
pub struct FramePairing {
    to_model: BTreeMap<u32, u64>,
    to_phys: BTreeMap<u64, u32>,
}

impl FramePairing {
    /// The model frame paired with the physical frame at `pa`, if any.
    #[must_use]
    pub fn model_of(&self, pa: u32) -> Option<u64> {
        self.to_model.get(&pa).copied()
    }

    /// Pairs the physical frame at `pa` (not yet paired) with model frame `id`, the model's
    /// frame at the same page. An error when `id` is already another physical frame.
    pub fn learn(&mut self, pa: u32, id: u64) -> Result<u64, String> {
        if let Some(other) = self.to_phys.get(&id) {
            return Err(format!(
                "model frame {id} is physical {other:#010x} and {pa:#010x}\n"
            ));
        }
        self.to_phys.insert(id, pa);
        self.to_model.insert(pa, id);
        Ok(id)
    }

    /// Every pair, (model frame id, physical frame address), by model frame id.
    pub fn pairs(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.to_phys.iter().map(|(&id, &pa)| (id, pa))
    }

    /// Forgets the pairs of model frames that are no longer live: the vmm may hand their
    /// physical frames out again as new ones.
    pub fn forget_dead(&mut self, is_live: impl Fn(u64) -> bool) {
        self.to_phys.retain(|&id, _| is_live(id));
        let to_phys = &self.to_phys;
        self.to_model.retain(|_, id| to_phys.contains_key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::FramePairing;

    #[test]
    fn a_model_frame_keeps_one_physical_frame_until_it_dies() {
        let mut p = FramePairing::default();
        assert_eq!(p.learn(0x4100_0000, 7), Ok(7));
        assert_eq!(p.model_of(0x4100_0000), Some(7));
        assert!(p.learn(0x4100_1000, 7).is_err());
        p.forget_dead(|id| id != 7);
        assert_eq!(p.model_of(0x4100_0000), None);
        assert_eq!(p.learn(0x4100_1000, 7), Ok(7));
    }
}
