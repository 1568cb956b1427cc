"""The project's own container image: every lightweight component runs in it, so component bodies
import project code instead of installing packages at run time."""

CLINOPS_IMAGE = "docker.io/clinops/clinops:0.1.0"
