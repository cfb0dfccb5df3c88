//! The terminal UI: state, one action enum, a keymap, a pure update returning intents,
//! views that are a pure function of the state, and a driver that performs the intents.

pub mod action;
pub mod app;
pub mod broker_view;
pub mod columns;
pub mod demo;
pub mod driver;
pub mod fleet_view;
pub mod form;
pub mod intent;
pub mod keymap;
pub mod model;
pub mod notice;
pub mod player;
pub mod recording_rows;
pub mod session;
pub mod terminal;
pub mod theme;
pub mod update;
pub mod views;
mod watch;
pub mod widgets;

pub use driver::{TuiContext, TuiError, run_tui};
