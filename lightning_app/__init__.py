"""The interactive app (start a fit, watch it, review sensor / clean / normal side by side
with AU curves). Not built yet: see the open issues."""
