"""The error the solver emulation raises for a bad SolverParameter or solver state."""
from fcn_port.port.errors import NetError


class SolverError(NetError):
    """A solver setting Caffe would refuse (its ``CHECK``/``LOG(FATAL)``), or a state that does not
    fit the net; the message names the field or file."""
