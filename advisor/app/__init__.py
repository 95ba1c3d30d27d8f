"""The Textual app: the App, one screen per file with its stylesheet, the shared wording."""
