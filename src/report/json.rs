use super::RunEvent;

/// One NDJSON line for `event`, or `None` for events `--json` leaves out.
pub fn line(event: &RunEvent) -> Option<String> {
    if matches!(event, RunEvent::JobOutput { .. }) {
        return None;
    }
    serde_json::to_string(event).ok()
}
