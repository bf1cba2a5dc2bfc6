//! Extension maps that start with room for what the stack adds to them.
//!
//! Per-request data travels in `http::Extensions` (DESIGN.md section 2); a map starts with
//! room for 3 entries and grows (a new table, the entries moved, the old one freed) at the
//! 4th and the 8th. A request gathers about 7 entries on its way through the proxy and a
//! response about 5, so each grew once or twice per request. A map cloned from an empty one
//! that has grown keeps its room, which is all this module does: the server starts each
//! request's map, and the endpoint each response's, as such a clone.

use std::sync::LazyLock;

/// A type for the filler entries (one per `N`).
#[derive(Clone, Copy)]
struct Filler<const N: usize>;

/// An empty map with room for 14 entries (16 buckets).
static REQUEST: LazyLock<http::Extensions> = LazyLock::new(|| grown(8));

/// An empty map with room for 7 entries (8 buckets).
static RESPONSE: LazyLock<http::Extensions> = LazyLock::new(|| grown(4));

/// An empty map that has grown to hold `fill` (at most 8) entries.
fn grown(fill: usize) -> http::Extensions {
    let fillers: [fn(&mut http::Extensions); 8] = [
        insert::<0>,
        insert::<1>,
        insert::<2>,
        insert::<3>,
        insert::<4>,
        insert::<5>,
        insert::<6>,
        insert::<7>,
    ];
    let mut ext = http::Extensions::new();
    for fill in fillers.iter().take(fill) {
        fill(&mut ext);
    }
    ext.clear();
    ext
}

fn insert<const N: usize>(ext: &mut http::Extensions) {
    ext.insert(Filler::<N>);
}

/// Moves `ext`'s entries (usually none) into a map with room for a request's extensions.
pub(crate) fn request(ext: &mut http::Extensions) {
    presize(ext, &REQUEST);
}

/// Moves `ext`'s entries (usually none) into a map with room for a response's extensions.
pub(crate) fn response(ext: &mut http::Extensions) {
    presize(ext, &RESPONSE);
}

fn presize(ext: &mut http::Extensions, template: &http::Extensions) {
    let mut roomy = template.clone();
    roomy.extend(std::mem::take(ext));
    *ext = roomy;
}

#[cfg(test)]
mod tests {
    #[derive(Clone, Debug, PartialEq)]
    struct Marker(u32);

    #[test]
    fn presizing_keeps_the_entries_and_starts_empty_otherwise() {
        let mut ext = http::Extensions::new();
        super::request(&mut ext);
        assert!(ext.is_empty(), "no filler left behind");
        ext.insert(Marker(1));
        super::response(&mut ext);
        assert_eq!(ext.len(), 1);
        assert_eq!(ext.get::<Marker>(), Some(&Marker(1)));
    }
}
