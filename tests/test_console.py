"""The console policy: third-party INFO announcements stay off a run's console, warnings stay on."""

import logging

from selectkit.console import quiet_third_party


def test_third_party_info_lines_are_quieted_and_warnings_kept():
    names = ["lightning.pytorch.utilities.rank_zero", "sentence_transformers.base.model", "transformers.modeling_utils", "huggingface_hub.file_download"]
    roots = {n.split(".")[0] for n in names}
    for name in [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in roots] + sorted(roots):
        logging.getLogger(name).setLevel(logging.NOTSET)  # undo earlier calls in this process
    logging.getLogger().setLevel(logging.INFO)  # as Hydra's job logging sets the root
    assert all(logging.getLogger(n).isEnabledFor(logging.INFO) for n in names), "the check can fail"
    quiet_third_party()
    for name in names:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    assert logging.getLogger("selectkit").isEnabledFor(logging.INFO), "selectkit's own lines still show"
