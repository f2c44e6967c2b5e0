"""Reading back what a flow run showed in the Prefect UI."""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType


def progress_artifacts(flow_run_id: UUID) -> list[tuple[str, float]]:
    """(description, progress) of one flow run's progress artifacts, its tasks' included."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"]))
        )
    return sorted((a.description, a.data) for a in found if a.flow_run_id == flow_run_id)
