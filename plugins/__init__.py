"""Built-in lbml plugins, registered through the `lbml` entry-point group like any third-party plugin."""
