"""Deprecated import path (fasvlm 0.1): :class:`ConversationDataModule` lives in
:mod:`fasvlm.data_modules.conversations` since 0.2. Saved configs that name
``fasvlm.text.conversations.ConversationDataModule`` keep working for one release, with a warning.
"""

from __future__ import annotations

import warnings

from fasvlm.data_modules.conversations import (
    ConversationDataModule,
    ConversationDataset,
    ConversationTurn,
    conversation_collate,
    conversation_turns,
)

__all__ = ["ConversationTurn", "conversation_turns", "ConversationDataset", "conversation_collate",
           "ConversationDataModule"]

warnings.warn("fasvlm.text.conversations is deprecated and will be removed in the next release: use "
              "fasvlm.data_modules.conversations (class_path fasvlm.data_modules.conversations.ConversationDataModule)",
              FutureWarning, stacklevel=2)
