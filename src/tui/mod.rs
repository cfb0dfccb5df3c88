//! The terminal UI: state, one action enum, a keymap, a pure update returning intents,
//! views that are a pure function of the state, and a driver that performs the intents.

pub mod action;
pub mod app;
pub mod form;
pub mod intent;
pub mod keymap;
pub mod model;
pub mod session;
pub mod theme;
pub mod update;
pub mod views;
pub mod widgets;
