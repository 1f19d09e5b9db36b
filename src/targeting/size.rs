//! Responsive slots: the size a slot takes for the width a page gives it.

use crate::inventory::parse_size;

/// A slot's size in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Size {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Size {
    /// Parses `WIDTHxHEIGHT`.
    pub fn parse(raw: &str) -> Option<Self> {
        parse_size(raw).map(|(width, height)| Self { width, height })
    }

    /// `WIDTHxHEIGHT`.
    pub fn label(&self) -> String {
        format!("{}x{}", self.width, self.height)
    }
}

/// Which of a slot's creatives a request may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeChoice {
    /// The slot's creatives as the inventory has them (a slot without sizes, or a slot with
    /// one `size` and a request without a width).
    Any,
    /// The slot's size at this index of its sizes.
    Size(usize),
    /// The width is below every size of the slot: only creatives that adapt (text, html).
    NoneFits,
}

/// Selects the size for a slot whose sizes are `sizes` (largest first, see
/// [`sort_largest_first`]) and a request that gives `width` (CSS pixels available), or none.
///
/// `responsive` is true for a slot with `sizes`: without a width, it takes its largest size.
/// A slot with one `size` keeps its inventory rule when no width is given.
pub fn select(sizes: &[Size], responsive: bool, width: Option<u32>) -> SizeChoice {
    if sizes.is_empty() {
        return SizeChoice::Any;
    }
    match width {
        None if responsive => SizeChoice::Size(0),
        None => SizeChoice::Any,
        Some(width) => sizes
            .iter()
            .position(|s| s.width <= width)
            .map_or(SizeChoice::NoneFits, SizeChoice::Size),
    }
}

/// Orders sizes so that the first that fits a width is the largest that does: by width, then
/// height, both descending.
pub fn sort_largest_first(sizes: &mut [Size]) {
    sizes.sort_by(|a, b| b.cmp(a));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(raw: &[&str]) -> Vec<Size> {
        let mut sizes: Vec<Size> = raw.iter().map(|s| Size::parse(s).unwrap()).collect();
        sort_largest_first(&mut sizes);
        sizes
    }

    #[test]
    fn the_width_selects_the_largest_size_that_fits() {
        let s = sizes(&["320x50", "970x250", "728x90"]);
        assert_eq!(s[0].label(), "970x250");
        let label = |choice| match choice {
            SizeChoice::Size(i) => s[i].label(),
            other => format!("{other:?}"),
        };
        assert_eq!(label(select(&s, true, Some(1280))), "970x250");
        assert_eq!(label(select(&s, true, Some(970))), "970x250");
        assert_eq!(label(select(&s, true, Some(969))), "728x90");
        assert_eq!(label(select(&s, true, Some(400))), "320x50");
        assert_eq!(label(select(&s, true, Some(320))), "320x50");
        assert_eq!(select(&s, true, Some(319)), SizeChoice::NoneFits);
    }

    #[test]
    fn of_two_sizes_of_one_width_the_taller_is_the_larger() {
        let s = sizes(&["300x250", "300x600"]);
        assert_eq!(select(&s, true, Some(300)), SizeChoice::Size(0));
        assert_eq!(s[0].label(), "300x600");
    }

    #[test]
    fn without_a_width_a_responsive_slot_takes_its_largest_size() {
        let s = sizes(&["320x50", "728x90"]);
        assert_eq!(select(&s, true, None), SizeChoice::Size(0));
        // A slot with one size keeps its rule; a slot without sizes takes any creative.
        assert_eq!(select(&s[..1], false, None), SizeChoice::Any);
        assert_eq!(select(&s[..1], false, Some(320)), SizeChoice::NoneFits);
        assert_eq!(select(&[], true, Some(320)), SizeChoice::Any);
    }
}
