//! The farmer <-> harvester protocol: message types, framing and the session state machine.
//!
//! Sans-IO: nothing here touches a socket or a clock. The messages arrive with the daemon
//! (issue 4); until then the crate only fixes its place in the workspace.
#![forbid(unsafe_code)]
