"""Run control (state machine, event bus) and the crash-safe run store; free of any GUI toolkit."""
