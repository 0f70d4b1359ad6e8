"""ipywidgets views for live labs (trainers in JupyterLab). Headless runs use the tables instead."""
