"""Attack replay: a scripted timeline played against a fresh Vigil on a simulated clock.

``vigil simulate SCENARIO.toml`` builds a throw-away instance, posts the scenario's images through
the real HTTP API, plays the site, its members, its moderators and its on-call staff, and reports
how long each image was visible, when the lockdown level changed and who was paged when.
"""
