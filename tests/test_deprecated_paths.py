"""Import paths that saved configs name keep working for one release, with a warning (CHANGELOG.md)."""

from __future__ import annotations

import subprocess
import sys


def test_old_conversation_datamodule_path_imports_with_a_future_warning():
    code = ("import warnings; warnings.simplefilter('error', FutureWarning)\n"
            "try:\n    import fasvlm.text.conversations\nexcept FutureWarning as w:\n    print('warned:', w)\n"
            "warnings.simplefilter('ignore')\n"
            "from fasvlm.text.conversations import ConversationDataModule as Old\n"
            "from fasvlm.data_modules.conversations import ConversationDataModule as New\n"
            "print('same:', Old is New)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "warned: fasvlm.text.conversations is deprecated" in out
    assert "same: True" in out
