"""Protocol state machines in the gen_fsm style: pure functions of (state, event, data)."""
