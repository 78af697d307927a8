"""When derived partitions regenerate: only below a parent partition whose data actually changed."""

import dagster as dg

# A new dataset, or a parent partition whose *data version* changed, regenerates the partitions
# below it; re-materializing a parent to the same data (a touched, unchanged file) runs nothing.
_parent_changed = dg.AutomationCondition.any_deps_match(
    dg.AutomationCondition.data_version_changed() | dg.AutomationCondition.will_be_requested()
).with_label("any_deps_data_changed")
follow_parents = dg.AutomationCondition.eager().replace("any_deps_updated", _parent_changed)
