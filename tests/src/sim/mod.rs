//! `splatfleet-sim validators`: simulated SN17 validators (v45 rules) behind an axon that checks
//! requests as Bittensor SDK 9.9.0's does, so the fleet's transport and pulling logic can be
//! tested end to end on 127.0.0.1 without a chain (a [`pacer`] can cap the task supply for
//! benchmarks); plus the outside services a worker talks
//! to: a generation service (`generator`) and the subnet's validation service (`validation`).

pub mod alignment_models;
pub mod axon;
pub mod events;
pub mod generator;
pub mod http_server;
pub mod misbehaviour;
pub mod models;
pub mod pacer;
pub mod rules;
pub mod scorer;
pub mod scorer_models;
pub mod setup;
pub mod tasks;
pub mod validation;

pub use axon::{spawn_validator, SimValidator};
pub use events::EventLog;
pub use generator::{AnswerMix, Fault, GeneratorSettings, SimGenerator};
pub use misbehaviour::Misbehaviour;
pub use rules::RuleSettings;
pub use scorer::{ScoreMode, ScoreSettings};
pub use validation::{SimValidation, ValidationFault, ValidationSettings};
