"""The web page (``page``), its jobs without gradio (``jobs``) and the server (``serve``)."""
