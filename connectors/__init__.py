"""Talk to the outside world. Nothing here knows about segments."""
