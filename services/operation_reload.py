"""What a reload of the operation file changes: which links start, stop, restart or stay.

Invariant: a link is restarted exactly when what it runs with changed: its blueprint or its
environment resolves to other settings (formatting and comments do not count; a data file's or a
plugin module's contents are not compared), and an environment whose settings changed gets a new
feed, so every link on it restarts; a link that stays is untouched.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from backend.config import LoadedOperation, ResolvedLink
from backend.config.schema import EnvironmentConfig


class ReloadFailedError(Exception):
    """Applying a checked reload failed part way (a bug, or the disk): the set may be partly changed."""


@dataclass(frozen=True)
class ReloadPlan:
    operation: LoadedOperation  # the file as re-read
    added: list[str]  # link ids, in file order
    removed: list[str]
    restarted: list[str]
    unchanged: list[str]
    new_feeds: list[str]  # environment ids whose feed is (re)built: new, or its settings changed

    @property
    def link_ids(self) -> list[str]:
        """Every link of the new running set, in file order."""
        return [link.link_id for link in self.operation.links]

    @property
    def links_to_build(self) -> list[ResolvedLink]:
        wanted = {*self.added, *self.restarted}
        return [link for link in self.operation.links if link.link_id in wanted]

    def as_log_fields(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "restarted": self.restarted,
                "unchanged": self.unchanged, "new_feeds": self.new_feeds}


def plan_reload(running: Mapping[str, ResolvedLink], feeds: Mapping[str, EnvironmentConfig],
                operation: LoadedOperation) -> ReloadPlan:
    """running: the links of the running set by id; feeds: each environment's feed (running or
    ended) by the settings it was built from; operation: the file as re-read."""
    wanted = {link.link_id: link for link in operation.links}
    new_feeds = list(dict.fromkeys(
        link.link.execution_environment_id for link in operation.links
        if feeds.get(link.link.execution_environment_id) != link.environment))
    added, restarted, unchanged = [], [], []
    for link_id, link in wanted.items():
        before = running.get(link_id)
        if before is None:
            added.append(link_id)
        elif before.blueprint != link.blueprint or link.link.execution_environment_id in new_feeds:
            restarted.append(link_id)
        else:
            unchanged.append(link_id)
    removed = [link_id for link_id in running if link_id not in wanted]
    return ReloadPlan(operation, added, removed, restarted, unchanged, new_feeds)
