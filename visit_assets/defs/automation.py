"""When derived partitions regenerate: only below a parent partition whose data actually changed."""

import dagster as dg

# A new dataset, or a parent partition whose *data version* changed, regenerates the partitions
# below it; re-materializing a parent to the same data (a touched, unchanged file) runs nothing.
_parent_changed = dg.AutomationCondition.any_deps_match(
    dg.AutomationCondition.data_version_changed() | dg.AutomationCondition.will_be_requested()
).with_label("any_deps_data_changed")
# A new code version (a stage's source or one of its prompt files) regenerates that stage's
# materialized partitions too; the LLM cache answers every request whose prompt did not change.
_code_changed = dg.AutomationCondition.code_version_changed().with_label("code_version_changed")
follow_parents = dg.AutomationCondition.eager().replace("any_deps_updated", _parent_changed | _code_changed)


def follow_parents_allowing_missing(*optional: str) -> dg.AutomationCondition:
    """`follow_parents` for an asset that reads these parents only when they exist (an imported-only
    dataset has no generated conversations): their absence does not hold it back."""
    missing = dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets(*optional))
    return follow_parents.replace("any_deps_missing", missing.with_label("any_required_deps_missing"))
