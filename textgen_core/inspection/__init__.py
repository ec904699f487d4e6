"""Looking inside a model: surprisal per token, the next-token distribution step by step, RNN unit
activations and the units that follow simple features of the text, attention weights, and which
earlier tokens a prediction can see."""
from __future__ import annotations

from .activations import Activations, activations
from .attention_map import AttentionRow, attention_from
from .explorer import Explorer, Step
from .features import FEATURES, UnitMatch, find_units
from .receptive_field import Influence, influence, visible_offsets
from .surprise import Surprisal, TokenRecord, surprisal

__all__ = ["FEATURES", "Activations", "AttentionRow", "Explorer", "Influence", "Step", "Surprisal", "TokenRecord",
           "UnitMatch", "activations", "attention_from", "find_units", "influence", "surprisal", "visible_offsets"]
