"""Alerts as users ask for them (:mod:`.spec`) and as stored and loaded for one run (:mod:`.definition`)."""
