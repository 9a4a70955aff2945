"""Dock widgets and the one worker helper; thin, they call core/."""
