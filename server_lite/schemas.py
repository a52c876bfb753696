"""The API contract: request bodies as pydantic models, published by the server as OpenAPI.

Requests forbid unknown fields, so a typo in a field name is a 422 naming that field instead of
being silently dropped. Responses are plain JSON documents described in ``docs/api.md``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

TaskStatus = Literal["created", "queued", "in_progress", "completed", "failed", "aborted", "stopped"]
TaskType = Literal["training", "testing", "inference", "data_processing", "application", "custom"]
Role = Literal["admin", "user", "agent"]

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=10_000)]
Id = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(Strict):
    name: Name
    description: ShortText = ""


class Param(Strict):
    """One hyperparameter: stored by section (``Args/lr``) with its type."""

    value: JsonValue = None
    type: Annotated[str, StringConstraints(max_length=50)] = ""
    description: ShortText = ""


class ConfigObject(Strict):
    """A configuration object (a file's text or a dict serialised as JSON/YAML)."""

    value: Annotated[str, StringConstraints(max_length=10_000_000)] = ""
    type: Annotated[str, StringConstraints(max_length=50)] = ""
    description: ShortText = ""


class Script(Strict):
    """Where the code came from; ``diff``, ``code`` and ``requirements`` are stored apart (heavy)."""

    repository: ShortText = ""
    branch: ShortText = ""
    commit: ShortText = ""
    entry_point: ShortText = ""
    working_dir: ShortText = ""
    binary: ShortText = ""
    diff: Annotated[str, StringConstraints(max_length=10_000_000)] = ""
    code: Annotated[str, StringConstraints(max_length=10_000_000)] = ""
    requirements: Annotated[str, StringConstraints(max_length=10_000_000)] = ""
    untracked: list[ShortText] = Field(default_factory=list, max_length=10_000)


class Environment(Strict):
    python: ShortText = ""
    executable: ShortText = ""
    os: ShortText = ""
    host: ShortText = ""
    packages: dict[str, ShortText] = Field(default_factory=dict)
    imported: list[ShortText] = Field(default_factory=list)
    gpus: list[dict[str, JsonValue]] = Field(default_factory=list)
    cuda: ShortText = ""
    driver: ShortText = ""


class TaskFields(Strict):
    """Fields a client may set on create or update."""

    name: Name | None = None
    project: Name | None = None
    type: TaskType | None = None
    tags: list[Tag] | None = Field(default=None, max_length=100)
    user: Annotated[str, StringConstraints(max_length=200)] | None = None
    comment: ShortText | None = None
    parent: Id | None = None
    hyperparams: dict[Name, dict[Name, Param]] | None = None
    configuration: dict[Name, ConfigObject] | None = None
    script: Script | None = None
    environment: Environment | None = None
    runtime: dict[Name, JsonValue] | None = None


class TaskCreate(TaskFields):
    name: Name
    project: Name


class TaskBulkCreate(Strict):
    """Many tasks in one request and one durable write (imports, migrations, benchmarks)."""

    tasks: list[TaskCreate] = Field(min_length=1, max_length=1000)


class StatusChange(Strict):
    status: TaskStatus
    reason: ShortText = ""
    force: bool = False
    """Skip the transition check (an admin repairing a task)."""


class ScalarSeries(Strict):
    """Points of one series in columnar form (one object per metric/variant per batch)."""

    metric: Name
    variant: Name
    iterations: list[int] = Field(max_length=2_000_000)
    values: list[float | None] = Field(max_length=2_000_000)
    timestamps: list[float] | None = Field(default=None, max_length=2_000_000)


class ConsoleLine(Strict):
    line: str
    stream: Literal["stdout", "stderr"] = "stdout"
    ts: float | None = None


class OtherEvent(Strict):
    """A plot, debug image (by blob reference), text, table or single value."""

    kind: Literal["plot", "image", "text", "table", "single_value", "audio", "html"]
    metric: Annotated[str, StringConstraints(max_length=200)] = ""
    variant: Annotated[str, StringConstraints(max_length=200)] = ""
    iteration: int | None = None
    ts: float | None = None
    data: JsonValue = None
    sha256: Sha256 | None = None


class EventBatch(Strict):
    """One batch of events; resending the same ``batch_id`` is a no-op (exactly once)."""

    batch_id: Annotated[str, StringConstraints(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = None
    scalars: list[ScalarSeries] = Field(default_factory=list, max_length=100_000)
    console: list[ConsoleLine] = Field(default_factory=list, max_length=1_000_000)
    events: list[OtherEvent] = Field(default_factory=list, max_length=100_000)


class UploadStart(Strict):
    sha256: Sha256
    size: int = Field(ge=0)


class ArtifactCreate(Strict):
    name: Name
    kind: Literal["artifact", "model", "debug_image"] = "artifact"
    mode: Literal["output", "input"] = "output"
    sha256: Sha256 | None = None
    size: int | None = Field(default=None, ge=0)
    uri: ShortText = ""
    content_type: Annotated[str, StringConstraints(max_length=100)] = ""
    metadata: dict[Name, JsonValue] = Field(default_factory=dict)


class QueueCreate(Strict):
    name: Name


class EnqueueRequest(Strict):
    task_id: Id
    priority: int = Field(default=0, ge=-1000, le=1000)


class DequeueRequest(Strict):
    queues: list[Name] = Field(min_length=1, max_length=50)
    worker: Name
    wait_s: float = Field(default=0.0, ge=0, le=60)
    lease_s: float = Field(default=30.0, ge=1, le=86_400)
    """How long the task's lease lasts without a heartbeat renewing it."""


class Heartbeat(Strict):
    """A worker's volatile status; lost when the server restarts, expires after ``ttl_s``."""

    queues: list[Name] = Field(default_factory=list)
    status: Annotated[str, StringConstraints(max_length=50)] = "idle"
    task_id: Id | None = None
    host: ShortText = ""
    ttl_s: float = Field(default=60.0, gt=0, le=3600)
    stats: dict[Name, JsonValue] = Field(default_factory=dict)


class TokenCreate(Strict):
    name: Name
    role: Role = "user"


ListResponse = dict[str, Any]
