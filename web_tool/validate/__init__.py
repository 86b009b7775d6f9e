"""How right is a finished map, and how much of each class is there? Accuracy assessment and area
estimation as Olofsson et al. (2014, Remote Sensing of Environment 148: 42-57) recommend.

    design      allocation of a sample to map classes, and a stratified random draw of pixels
    estimators  the stratified estimators: accuracies, area proportions, their standard errors
    samples     samples and their answers in SQLite (state_dir/validation.sqlite), apart from
                the training corrections
    reference   the same report against a reference: a label raster (census on the map's grid)
                or points with a class
    report      the report as JSON and CSV: error matrices, accuracies and areas with 95 % CIs
    routes      the HTTP routes under /jobs/<id>/...
    __main__    the command line: python -m web_tool.validate
"""
