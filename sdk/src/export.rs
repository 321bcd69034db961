//! The glue between a [`Policy`] and the component's exports, used by [`export_policy!`].
//!
//! Each event runs in a fresh instance: the host calls `init(settings)`, which builds the policy
//! and keeps it here, then `handle(event)`, which uses it.

use crate::host::WasmHost;
use crate::{Event, Plan, Policy, PolicyInfo};
use std::any::Any;
use std::cell::RefCell;

pub use crate::bindings::exports::haven::policy::handler::Guest;

thread_local! {
    static POLICY: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// `describe` export.
pub fn describe<P: Policy>() -> PolicyInfo {
    P::info()
}

/// `init` export: parse the settings (JSON) and build the policy.
pub fn init<P: Policy + 'static>(settings: String) -> Result<(), String> {
    let settings: P::Settings = serde_json::from_str(&settings)
        .map_err(|error| format!("bad settings for {}: {error}", P::info().name))?;
    let policy = P::new(settings).map_err(|error| error.to_string())?;
    POLICY.with(|slot| *slot.borrow_mut() = Some(Box::new(policy)));
    Ok(())
}

/// `handle` export: run the policy built by `init`.
pub fn handle<P: Policy + 'static>(event: Event) -> Result<Plan, String> {
    POLICY.with(|slot| {
        let mut slot = slot.borrow_mut();
        let policy = slot
            .as_mut()
            .and_then(|policy| policy.downcast_mut::<P>())
            .ok_or_else(|| "handle called before init".to_string())?;
        policy
            .handle(&event, &WasmHost)
            .map_err(|error| error.to_string())
    })
}

/// Export a type implementing [`Policy`](crate::Policy) as the component's `handler`.
///
/// Use once, at the root of a policy crate built as a `cdylib`:
///
/// ```ignore
/// haven_sdk::export_policy!(MyPolicy);
/// ```
///
/// The exports exist only in the WebAssembly build: natively (for unit tests) the crate is
/// plain Rust, and the component's export names would not even be valid linker symbols.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[cfg(target_arch = "wasm32")]
        mod __haven_export {
            use super::*;

            struct Exported;

            impl $crate::export::Guest for Exported {
                fn describe() -> $crate::PolicyInfo {
                    $crate::export::describe::<$policy>()
                }
                fn init(settings: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::export::init::<$policy>(settings)
                }
                fn handle(event: $crate::Event) -> ::std::result::Result<$crate::Plan, ::std::string::String> {
                    $crate::export::handle::<$policy>(event)
                }
            }

            $crate::bindings::__export_haven_world!(Exported with_types_in $crate::bindings);
        }
    };
}
