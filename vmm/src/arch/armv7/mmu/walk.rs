//! Reading the tables back: what a page translates to ([`Translation`]), one address or every
//! mapped page of a range.

use super::*;

/// The size of the block a translation comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockSize {
    /// A 1 MiB section.
    Section,
    /// A 4 KiB small page.
    SmallPage,
}

/// What one page translates to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// The frame the page maps.
    pub frame: PhysFrame,
    /// Permissions and memory type.
    pub attrs: MappingAttrs,
    /// Whether it comes from a section or a small page.
    pub block: BlockSize,
}

impl ArchMmu {
    /// What `va` translates to, or `None` when it is not mapped.
    pub fn query<M: Machine>(
        &self,
        m: &mut M,
        va: VirtAddr,
    ) -> Result<Option<Translation>, MapError> {
        let p = VirtPage::containing(va);
        self.check_range(PageRange::new(p, 1).ok_or(MapError::OutOfWindow {
            start: va,
            pages: 1,
        })?)?;
        self.translate(m, p)
    }

    /// Every mapped page in ascending order (sections expanded to their 256 pages).
    pub fn mappings<M: Machine>(
        &self,
        m: &mut M,
    ) -> Result<Vec<(VirtPage, Translation)>, MapError> {
        self.mappings_in(m, self.window())
    }

    /// The mapped pages of `range` (clipped to the window) in ascending order. The non-zero L1
    /// entries of the range are read in one [`Machine::read_nonzero_words`], then the part of
    /// each L2 table the range covers in one [`Machine::read_words`].
    pub fn mappings_in<M: Machine>(
        &self,
        m: &mut M,
        range: PageRange,
    ) -> Result<Vec<(VirtPage, Translation)>, MapError> {
        let mut out = Vec::new();
        let window = self.window();
        if !window.overlaps(range) {
            return Ok(out);
        }
        let lo = range.start().number().max(window.start().number());
        let hi = range.end_number().min(window.end_number());
        let Some(clipped) = PageRange::new(page(lo)?, hi - lo) else {
            return Ok(out);
        };
        let mut l2 = [0u32; ENTRIES_PER_L2 as usize];
        let mut decoded = None;
        for (l1, descriptor) in self.valid_l1s(m, clipped) {
            if descriptor == L1Descriptor::Fault {
                continue;
            }
            let (first, end) = Self::clip(clipped, l1);
            let words = &mut l2[..(end - first) as usize];
            if let L1Descriptor::PageTable { table, .. } = descriptor {
                m.read_words(Self::l2_entry(table, first), words);
            }
            for (p, &raw) in (first..end).zip(words.iter()) {
                if let Some(t) = Self::translation(descriptor, raw, page(p)?, &mut decoded)? {
                    out.push((page(p)?, t));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn translate<M: Machine>(
        &self,
        m: &mut M,
        p: VirtPage,
    ) -> Result<Option<Translation>, MapError> {
        let l1 = p.number() / ENTRIES_PER_L2;
        let descriptor = self.read_l1(m, l1);
        self.translate_under(m, descriptor, p)
    }

    /// [`Self::translate`] with the page's L1 entry already read.
    pub(super) fn translate_under<M: Machine>(
        &self,
        m: &mut M,
        descriptor: L1Descriptor,
        p: VirtPage,
    ) -> Result<Option<Translation>, MapError> {
        let l2 = match descriptor {
            L1Descriptor::PageTable { table, .. } => m.read_word(Self::l2_entry(table, p.number())),
            _ => 0,
        };
        Self::translation(descriptor, l2, p, &mut None)
    }

    /// The translation of `p` from its L1 descriptor and, under a page table, its L2 word
    /// (`l2` is ignored otherwise). `decoded` remembers the last attributes decoded: the
    /// pages of a walk mostly share them, and decoding checks the exact inverse each time.
    pub(super) fn translation(
        descriptor: L1Descriptor,
        l2: u32,
        p: VirtPage,
        decoded: &mut Option<(PageAttributes, MappingAttrs)>,
    ) -> Result<Option<Translation>, MapError> {
        let va = p.start();
        let (frame, attrs, block) = match descriptor {
            L1Descriptor::Fault => return Ok(None),
            L1Descriptor::Supersection(raw) => {
                return Err(MapError::UnsupportedDescriptor { va, raw });
            }
            L1Descriptor::Section { base, attrs, .. } => (
                frame_plus(PhysFrame::containing(base), p.number() % ENTRIES_PER_L2)?,
                attrs,
                BlockSize::Section,
            ),
            L1Descriptor::PageTable { .. } => match L2Descriptor::decode(l2) {
                L2Descriptor::Fault => return Ok(None),
                L2Descriptor::Large { .. } => {
                    return Err(MapError::UnsupportedDescriptor { va, raw: l2 });
                }
                L2Descriptor::Small { base, attrs } => {
                    (PhysFrame::containing(base), attrs, BlockSize::SmallPage)
                }
            },
        };
        let attrs = match *decoded {
            Some((known, as_mapping)) if known == attrs => as_mapping,
            _ => {
                let raw = match descriptor {
                    L1Descriptor::PageTable { .. } => l2,
                    d => d.encode(),
                };
                let as_mapping = MappingAttrs::from_page_attributes(attrs)
                    .ok_or(MapError::UnsupportedDescriptor { va, raw })?;
                *decoded = Some((attrs, as_mapping));
                as_mapping
            }
        };
        Ok(Some(Translation {
            frame,
            attrs,
            block,
        }))
    }
}
