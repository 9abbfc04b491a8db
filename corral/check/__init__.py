"""``corral check``: evaluate the compiled admission policy against manifests, offline.

Sits beside gateway/control/learn: it reads manifests (``read``), runs the CEL that
``corral.compile.admission_cel`` puts into the ValidatingAdmissionPolicy with the real CEL engine
(``engine``), and formats the findings (``report``). Nothing here talks to a cluster.
"""
