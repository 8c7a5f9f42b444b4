//! Task-source protocols the fleet speaks. Today one: SN17's pull/submit synapses
//! ([`sn17`]); another task source goes beside it as its own module.

pub mod sn17;
