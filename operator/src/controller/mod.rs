//! The operator's controllers.

pub mod camera_status;
pub mod children;
