//! Running code that may panic (a stage, a worker job, a third-party parser fed a corrupt
//! file) so that a panic becomes an error carrying its message.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Run `f`; a panic becomes `Err` with the panic's message. The closure's captured state is
/// treated as unwind safe: callers drop whatever `f` was building when it panics.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_a_value_passes_through() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(
            catch(|| -> u8 { panic!("bad {}", 3) }),
            Err("bad 3".to_string())
        );
        assert_eq!(
            catch(|| -> u8 { panic!("static") }),
            Err("static".to_string())
        );
        assert_eq!(
            catch(|| -> u8 { std::panic::panic_any(5u32) }),
            Err("a panic without a message".to_string())
        );
    }
}
