"""Target of a spawned child process (test_registry): imports nothing of espnet2_ext.

A worker of ESPnet's distributed training is a fresh interpreter that unpickles
``EnhancementTask.main_worker``; this function mimics that order of imports.
"""


def child_resolves(queue):
    from espnet2.tasks.enh import separator_choices as choices

    before = "bs_locoformer" in choices.classes
    from espnet2_ext.tasks.enh import EnhancementTask  # what a worker unpickles

    cls = choices.get_class("bs_locoformer")
    queue.put((before, cls.__name__, EnhancementTask.__module__))
