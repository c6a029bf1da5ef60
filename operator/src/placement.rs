//! Camera placement: a pure function from (cameras, recorders, current assignment) to a new
//! assignment. Filled in by the placement work (issue 4).
