"""Scenario adjustments shared by the benchmarks."""


def smoke_model(scenario):
    """``scenario`` with a model that a smoke-size training window (~1,000 rows) does not leave constant.

    Leaves of at least 50 samples and a calibration block of a few hundred rows make the default
    model predict one probability for every bar on so little data, and training refuses a constant
    model (``lbml.models.degenerate``): smaller leaves and no calibration block. The benchmarks
    measure speed, not the model.
    """
    params = {**scenario.model.params, "min_child_weight": 1.0}
    return scenario.model_copy(update={
        "model": scenario.model.model_copy(update={"params": params}),
        "validation": scenario.validation.model_copy(update={"calibration": "none"}),
    })
