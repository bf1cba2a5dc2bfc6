//! What unfinished work knew when a layer dropped it.
//!
//! A layer that cuts a request short (a timeout, or a client that went away) drops the
//! futures below it, and those futures know what the layer does not: the route matched, the
//! backend picked, the attempts made. [`observe`] runs such a drop and gathers what the
//! dropped futures [`note`] while it runs. Dropping happens synchronously on one thread, so
//! the notes travel through a thread-local: outside an observation a note is not recorded,
//! and a finished future notes nothing, so the request path pays nothing for it.
//!
//! ```
//! use linkerd_http_classify::dropped::{self, DropNote};
//! use std::sync::Arc;
//!
//! /// Stands for a backend's response future that has not finished.
//! struct InFlight(Arc<str>);
//!
//! impl Drop for InFlight {
//!     fn drop(&mut self) {
//!         dropped::note(|n| n.backend_or(&self.0));
//!     }
//! }
//!
//! let mut work = Some(InFlight(Arc::from("web")));
//! let note: DropNote = dropped::observe(|| work = None);
//! assert_eq!(note.backend.as_deref(), Some("web"));
//!
//! // Not observed: nothing is kept.
//! drop(InFlight(Arc::from("api")));
//! assert_eq!(dropped::observe(|| ()), DropNote::default());
//! ```

use crate::{BoxError, ProxyErrorKind};
use std::{cell::RefCell, error::Error, fmt, sync::Arc};

/// What dropped futures noted during an [`observe`]: each field is set by the outermost
/// future that knew it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropNote {
    /// The matched route's name.
    pub route: Option<Arc<str>>,
    /// The backend the request in flight was sent to.
    pub backend: Option<Arc<str>>,
    /// Attempts made, the one in flight included.
    pub attempts: Option<u32>,
}

impl DropNote {
    /// Sets the route unless it is set.
    pub fn route_or(&mut self, route: &Arc<str>) {
        self.route.get_or_insert_with(|| route.clone());
    }

    /// Sets the backend unless it is set.
    pub fn backend_or(&mut self, backend: &Arc<str>) {
        self.backend.get_or_insert_with(|| backend.clone());
    }

    /// Sets the attempts unless they are set.
    pub fn attempts_or(&mut self, attempts: u32) {
        self.attempts.get_or_insert(attempts);
    }

    /// Whether nothing was noted.
    pub fn is_empty(&self) -> bool {
        self.route.is_none() && self.backend.is_none() && self.attempts.is_none()
    }

    /// Fills what is unset here from `other`.
    fn merge(&mut self, other: DropNote) {
        if self.route.is_none() {
            self.route = other.route;
        }
        if self.backend.is_none() {
            self.backend = other.backend;
        }
        if self.attempts.is_none() {
            self.attempts = other.attempts;
        }
    }
}

/// An observation in progress.
#[derive(Default)]
struct Observation {
    note: DropNote,
    cause: Option<ProxyErrorKind>,
}

thread_local! {
    static OBSERVING: RefCell<Option<Observation>> = const { RefCell::new(None) };
}

/// Runs `drop` (code that drops unfinished futures) and returns what they noted.
///
/// Observations nest: what an inner one gathers is returned to it and also reaches the
/// outer one (a layer that looks at what it dropped does not hide it from a layer above).
pub fn observe(drop: impl FnOnce()) -> DropNote {
    observe_with(None, drop)
}

/// Like [`observe`], for a drop made because of `cause` (a timeout's kind), which the
/// dropped futures can read with [`cause`] (a backend's metrics label the attempt with it
/// rather than as a cancellation).
pub fn observe_cut(cause: ProxyErrorKind, drop: impl FnOnce()) -> DropNote {
    observe_with(Some(cause), drop)
}

fn observe_with(cause: Option<ProxyErrorKind>, drop: impl FnOnce()) -> DropNote {
    /// Puts the outer observation back, also when `drop` panics.
    struct Restore(Option<Option<Observation>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                let _ = OBSERVING.try_with(|cell| {
                    if let Ok(mut slot) = cell.try_borrow_mut() {
                        *slot = outer;
                    }
                });
            }
        }
    }

    let outer = OBSERVING
        .try_with(|cell| {
            cell.try_borrow_mut().ok().map(|mut slot| {
                // An inner observation without a cause of its own keeps the outer one's.
                let cause = cause.or_else(|| slot.as_ref().and_then(|o| o.cause));
                slot.replace(Observation {
                    note: DropNote::default(),
                    cause,
                })
            })
        })
        .ok()
        .flatten();
    let Some(outer) = outer else {
        // No thread-local (thread teardown) or already borrowed: nothing can be gathered.
        drop();
        return DropNote::default();
    };
    let mut restore = Restore(Some(outer));
    drop();
    let outer = restore.0.take().unwrap_or_default();
    OBSERVING
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let gathered = slot.take().map(|o| o.note).unwrap_or_default();
                *slot = outer.map(|mut o| {
                    o.note.merge(gathered.clone());
                    o
                });
                gathered
            }
            Err(_) => DropNote::default(),
        })
        .unwrap_or_default()
}

/// Lets `f` add to the observation in progress, if any; a no-op otherwise.
///
/// Call it from the `Drop` of a future that has not finished. `f` must not call [`note`] or
/// [`observe`] itself.
pub fn note(f: impl FnOnce(&mut DropNote)) {
    let _ = OBSERVING.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut()
            && let Some(o) = slot.as_mut()
        {
            f(&mut o.note);
        }
    });
}

/// Why the work being dropped now is dropped, when the layer dropping it said so
/// ([`observe_cut`]); `None` for a plain [`observe`] (a client that went away) or outside an
/// observation.
pub fn cause() -> Option<ProxyErrorKind> {
    OBSERVING
        .try_with(|cell| {
            cell.try_borrow()
                .ok()
                .and_then(|slot| slot.as_ref().and_then(|o| o.cause))
        })
        .ok()
        .flatten()
}

/// An error that cut work short, with what the dropped work noted (see [`observe`]).
///
/// Transparent: it displays as its source and its [`source`](Error::source) is that error,
/// so error mapping and classification see through it.
#[derive(Debug)]
pub struct CutShort {
    note: DropNote,
    source: BoxError,
}

impl CutShort {
    /// `source`, with `note` (returned as it is when the note is empty).
    pub fn wrap(note: DropNote, source: BoxError) -> BoxError {
        if note.is_empty() {
            return source;
        }
        Box::new(Self { note, source })
    }

    /// What the dropped work noted.
    pub fn note(&self) -> &DropNote {
        &self.note
    }

    /// The note of the first `CutShort` in `error`'s `source()` chain.
    pub fn find<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a DropNote> {
        crate::chain(error)
            .find_map(|e| e.downcast_ref::<Self>())
            .map(Self::note)
    }
}

impl fmt::Display for CutShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl Error for CutShort {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Noting(DropNote);

    impl Drop for Noting {
        fn drop(&mut self) {
            let mine = std::mem::take(&mut self.0);
            note(|n| n.merge(mine));
        }
    }

    fn backend(name: &str) -> Noting {
        Noting(DropNote {
            backend: Some(Arc::from(name)),
            ..DropNote::default()
        })
    }

    #[test]
    fn outside_an_observation_nothing_is_kept() {
        drop(backend("a"));
        assert!(observe(|| ()).is_empty());
    }

    #[test]
    fn the_outermost_note_wins() {
        let route = Noting(DropNote {
            route: Some(Arc::from("r")),
            attempts: Some(2),
            ..DropNote::default()
        });
        let inner = Noting(DropNote {
            attempts: Some(5),
            ..DropNote::default()
        });
        let note = observe(|| drop((route, backend("b"), inner)));
        assert_eq!(note.route.as_deref(), Some("r"));
        assert_eq!(note.backend.as_deref(), Some("b"));
        assert_eq!(note.attempts, Some(2));
    }

    #[test]
    fn nested_observations_reach_the_outer_one() {
        let outer = observe(|| {
            let inner = observe(|| drop(backend("b")));
            assert_eq!(inner.backend.as_deref(), Some("b"));
            drop(Noting(DropNote {
                route: Some(Arc::from("r")),
                ..DropNote::default()
            }));
        });
        assert_eq!(outer.backend.as_deref(), Some("b"), "{outer:?}");
        assert_eq!(outer.route.as_deref(), Some("r"), "{outer:?}");
        assert!(observe(|| ()).is_empty(), "nothing left over");
    }

    #[test]
    fn a_panicking_drop_restores_the_outer_observation() {
        let outer = observe(|| {
            let caught = std::panic::catch_unwind(|| observe(|| panic!("in drop")));
            assert!(caught.is_err());
            drop(backend("after"));
        });
        assert_eq!(outer.backend.as_deref(), Some("after"));
    }

    #[test]
    fn a_cut_tells_its_cause_to_nested_observations() {
        struct ReadsCause(std::rc::Rc<std::cell::Cell<Option<ProxyErrorKind>>>);
        impl Drop for ReadsCause {
            fn drop(&mut self) {
                // A layer below observes its own drop, without a cause of its own.
                let seen = self.0.clone();
                observe(|| seen.set(cause()));
            }
        }
        let seen = std::rc::Rc::new(std::cell::Cell::new(None));
        observe_cut(ProxyErrorKind::BackendRequestTimeout, || {
            drop(ReadsCause(seen.clone()));
        });
        assert_eq!(seen.get(), Some(ProxyErrorKind::BackendRequestTimeout));
        observe(|| drop(ReadsCause(seen.clone())));
        assert_eq!(seen.get(), None, "a client gone is no timeout");
        assert_eq!(cause(), None, "none outside an observation");
    }

    #[test]
    fn cut_short_is_transparent() {
        let source: BoxError = "request timeout".into();
        let empty = CutShort::wrap(DropNote::default(), source);
        assert!(!empty.is::<CutShort>(), "an empty note adds nothing");
        let note = DropNote {
            backend: Some(Arc::from("b")),
            ..DropNote::default()
        };
        let wrapped = CutShort::wrap(note.clone(), empty);
        assert_eq!(wrapped.to_string(), "request timeout");
        assert_eq!(
            wrapped.source().map(ToString::to_string).as_deref(),
            Some("request timeout")
        );
        assert_eq!(CutShort::find(&*wrapped), Some(&note));
    }
}
