"""DAQmx error codes and messages of the simulated server.

Everything the simulated driver refuses is raised as :class:`DaqmxError`; the servicer turns it
into an aborted RPC with trailing metadata ``ni-error`` (the code) as the NI gRPC Device Server
does, so the nidaqmx client raises :class:`nidaqmx.errors.DaqError` with that ``error_code``.
"""

from __future__ import annotations

from collections.abc import Mapping


class Code:
    """The DAQmx status codes this server produces (values as in ``nidaqmx.error_codes``)."""

    PAL_RESOURCE_RESERVED = -50103
    INVALID_ROUTING_SOURCE_TERMINAL_NAME_ROUTING = -89120
    TRIG_LINE_NOT_FOUND_ROUTING = -89125
    INVALID_ATTRIBUTE_VALUE = -200077
    MIN_NOT_LESS_THAN_MAX = -200082
    INVALID_SYNTAX_FOR_PHYSICAL_CHANNEL_RANGE = -200086
    INVALID_TASK = -200088
    DUPLICATE_TASK = -200089
    INVALID_NUMBER_SAMPLES_TO_READ = -200096
    INCONSISTENT_NUM_SAMPLES_TO_WRITE = -200103
    PHYSICAL_CHAN_DOES_NOT_EXIST = -200170
    ATTR_NOT_SUPPORTED = -200197
    INVALID_DEVICE_ID = -200220
    READ_BUFFER_TOO_SMALL = -200229
    SAMPLES_WILL_NEVER_BE_AVAILABLE = -200278
    SAMPLES_NO_LONGER_AVAILABLE = -200279
    SAMPLES_NOT_YET_AVAILABLE = -200284
    GEN_STOPPED_TO_PREVENT_REGEN_OF_OLD_SAMPLES = -200290
    SAMPLES_CAN_NOT_YET_BE_WRITTEN = -200292
    NO_MORE_SPACE = -200293
    ATTRIBUTE_NOT_SUPPORTED_IN_TASK_CONTEXT = -200452
    INVALID_TIMEOUT_VAL = -200453
    OUTPUT_BUFFER_EMPTY = -200462
    CAN_NOT_PERFORM_OP_WHEN_NO_CHANS_IN_TASK = -200478
    CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING = -200479
    CHAN_ALREADY_IN_TASK = -200489
    CANNOT_SET_PROPERTY_WHEN_TASK_RUNNING = -200557
    MULTI_CHAN_TYPES_IN_TASK = -200559
    WAIT_UNTIL_DONE_DOES_NOT_INDICATE_DONE = -200560
    INVALID_AO_DATA_WRITE = -200561
    OUTPUT_BUF_SIZE_TOO_SMALL_TO_START_GEN = -200609
    CANNOT_WRITE_WHEN_AUTO_START_FALSE_AND_TASK_NOT_RUNNING = -200846
    UNKNOWN = -200000


_DESCRIPTIONS: Mapping[int, str] = {
    Code.PAL_RESOURCE_RESERVED: (
        "The specified resource is reserved. The operation could not be completed as specified."
    ),
    Code.INVALID_ROUTING_SOURCE_TERMINAL_NAME_ROUTING: (
        "Source terminal to be routed could not be found on the device.\n\n"
        "Make sure the terminal name is valid for the specified device. Refer to Measurement & "
        "Automation Explorer or the device routes for valid terminal names."
    ),
    Code.TRIG_LINE_NOT_FOUND_ROUTING: (
        "Requested route could not be made: no trigger line connects the source and the "
        "destination devices (no shared bus or chassis)."
    ),
    Code.INVALID_ATTRIBUTE_VALUE: "Requested value is not a supported value for this property.",
    Code.MIN_NOT_LESS_THAN_MAX: "Minimum is not less than the maximum.",
    Code.READ_BUFFER_TOO_SMALL: (
        "Buffer is too small to fit the read data: allocate (channels x samples) values."
    ),
    Code.INVALID_SYNTAX_FOR_PHYSICAL_CHANNEL_RANGE: (
        "Syntax for a range of objects in the input string is invalid."
    ),
    Code.INVALID_TASK: "Task specified is invalid or does not exist.",
    Code.DUPLICATE_TASK: "Task cannot be created, because a task with the same name exists.",
    Code.INVALID_NUMBER_SAMPLES_TO_READ: "Number of samples to read must be -1 or greater.",
    Code.INCONSISTENT_NUM_SAMPLES_TO_WRITE: (
        "Number of samples to write for each channel does not match the size of the array."
    ),
    Code.PHYSICAL_CHAN_DOES_NOT_EXIST: "Physical channel specified does not exist on this device.",
    Code.ATTR_NOT_SUPPORTED: "Specified property is not supported.",
    Code.INVALID_DEVICE_ID: (
        "Device identifier is invalid.\n\nMake sure the device name matches a device in the "
        "system (see System.devices)."
    ),
    Code.SAMPLES_WILL_NEVER_BE_AVAILABLE: (
        "Attempted to read a sample beyond the final sample acquired. The acquisition has "
        "stopped, therefore the sample specified by the combination of position and offset "
        "will never be available."
    ),
    Code.SAMPLES_NO_LONGER_AVAILABLE: (
        "Attempted to read samples that are no longer available. The requested sample was "
        "previously available, but has since been overwritten.\n\nIncreasing the buffer size, "
        "reading the data more frequently, or specifying a fixed number of samples to read "
        "instead of reading all available samples might correct the problem."
    ),
    Code.SAMPLES_NOT_YET_AVAILABLE: (
        "Some or all of the samples requested have not yet been acquired.\n\nTo wait for the "
        "samples to become available use a longer read timeout or read later in your program. "
        "To make the samples available sooner, increase the sample rate. If your task uses a "
        "start trigger, make sure that your start trigger is configured correctly. It is also "
        "possible that you configured the task for external timing, and no clock was supplied. "
        "If this is the case, supply an external clock."
    ),
    Code.GEN_STOPPED_TO_PREVENT_REGEN_OF_OLD_SAMPLES: (
        "Generation was stopped to prevent the regeneration of old samples. Your application "
        "was unable to write samples to the background buffer fast enough to prevent old "
        "samples from being regenerated."
    ),
    Code.SAMPLES_CAN_NOT_YET_BE_WRITTEN: (
        "Some or all of the samples to write could not be written to the buffer yet. More "
        "space will free up as samples currently in the buffer are generated."
    ),
    Code.NO_MORE_SPACE: (
        "Attempted to write samples that exceed the space available in the buffer: the task "
        "is not running and the buffer is full."
    ),
    Code.ATTRIBUTE_NOT_SUPPORTED_IN_TASK_CONTEXT: (
        "Specified property is not supported by the device or is not applicable to the task."
    ),
    Code.INVALID_TIMEOUT_VAL: "Timeout value is invalid: use -1 (wait forever) or >= 0 (s).",
    Code.OUTPUT_BUFFER_EMPTY: (
        "There is no data in the buffer to generate: write data before starting a buffered "
        "generation."
    ),
    Code.CAN_NOT_PERFORM_OP_WHEN_NO_CHANS_IN_TASK: (
        "Cannot perform this operation because the task has no channels."
    ),
    Code.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING: (
        "The specified operation cannot be performed while the task is running."
    ),
    Code.CHAN_ALREADY_IN_TASK: (
        "Specified channel cannot be added to the task, because a channel with the same name "
        "is already in the task."
    ),
    Code.CANNOT_SET_PROPERTY_WHEN_TASK_RUNNING: (
        "Specified property cannot be set while the task is running."
    ),
    Code.MULTI_CHAN_TYPES_IN_TASK: (
        "Task cannot contain a channel of the specified type, because it contains channels of "
        "a different type. Create a separate task for each channel type."
    ),
    Code.WAIT_UNTIL_DONE_DOES_NOT_INDICATE_DONE: (
        "Wait Until Done did not indicate that the task was done within the specified timeout."
    ),
    Code.INVALID_AO_DATA_WRITE: (
        "Invalid analog output data: the value to write is outside the range of the channel's "
        "minimum and maximum values. Nothing was written."
    ),
    Code.OUTPUT_BUF_SIZE_TOO_SMALL_TO_START_GEN: (
        "Output buffer size is too small to start the generation: write at least 2 samples."
    ),
    Code.CANNOT_WRITE_WHEN_AUTO_START_FALSE_AND_TASK_NOT_RUNNING: (
        "Write cannot be performed when the auto start input to DAQmx Write is false, the task "
        "is not running, and timing for the task is not configured or timing is configured "
        "for on-demand."
    ),
    Code.UNKNOWN: "An unknown error occurred in the simulated NI-DAQmx server.",
}


def describe(code: int) -> str:
    """The generic DAQmx description of ``code`` ('' when this server does not know it)."""
    return _DESCRIPTIONS.get(int(code), "")


class DaqmxError(Exception):
    """A DAQmx error, as the real driver would report it.

    Args:
        code: The DAQmx status code (negative).
        detail: What exactly went wrong (property, requested value, limits...).
        task_name: The task concerned, appended as DAQmx does ("Task Name: ...").
        samps_per_chan_read: Samples per channel read before the error (reads).
        samps_per_chan_written: Samples per channel written before the error (writes).
    """

    def __init__(
        self,
        code: int,
        detail: str = "",
        *,
        task_name: str | None = None,
        samps_per_chan_read: int | None = None,
        samps_per_chan_written: int | None = None,
    ) -> None:
        self.code = int(code)
        self.detail = detail
        self.task_name = task_name
        self.samps_per_chan_read = samps_per_chan_read
        self.samps_per_chan_written = samps_per_chan_written
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The extended error text: description, detail, task name and status code."""
        parts = [describe(self.code) or "DAQmx error."]
        if self.detail:
            parts.append(self.detail)
        if self.task_name is not None:
            parts.append(f"Task Name: {self.task_name}")
        parts.append(f"Status Code: {self.code}")
        return "\n\n".join(parts)

    def for_task(self, task_name: str) -> DaqmxError:
        """This error with ``task_name`` filled in (unless it already names a task)."""
        if self.task_name is None:
            self.task_name = task_name
        return self
