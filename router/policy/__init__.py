"""The routing policy: a function of predicted scores, costs and a user's setting, and nothing else.

- ``rule``: the one decision rule (``choose``, ``rank``) and the lambdas where its choices change;
- ``operating_point``: ``Setting`` -> ``OperatingPoint`` through one resolver on a ``Calibration``,
  read from the router's ``curve`` (spend and quality by lambda) and ``share`` quantiles;
- ``exploration``: the serving policy's probabilities and draws (propensities);
- ``propensity``: inverse-propensity weights for fits and off-policy estimates.

The bottom layer of the package: it imports nothing else of the project, and everything that decides,
calibrates, evaluates or serves goes through it.
"""
