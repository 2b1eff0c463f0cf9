//! The one integration test binary: the API client against the simulator, the wire format
//! against a recording server, and the real `retouchd` binary end to end.

mod api_client;
mod architecture;
mod bad_input;
mod browser;
mod cluster;
mod daemon_e2e;
mod dashboard;
mod finished_photos;
mod hostile;
mod in_process;
mod intruder;
mod notifications;
mod odd_inputs;
mod openapi;
mod operations;
mod reliability;
mod security;
mod support;
mod swapped_links;
mod wire_format;
