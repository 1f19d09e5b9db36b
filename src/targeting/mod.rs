//! Targeting rules beyond keywords, pure and evaluated per request: the request's country
//! ([`country`]), day-parting in the reporting time zone ([`schedule`]), the size a responsive
//! slot takes for the width a page gives it ([`size`]), and competitive separation on a page
//! ([`separation`]).

pub mod country;
pub mod schedule;
pub mod separation;
pub mod size;

pub use country::Country;
pub use schedule::{parse_time_of_day, LocalMoment, Schedule};
pub use separation::PageShown;
pub use size::{select, Size, SizeChoice};
