package state

// StopTracker stops j's follower of the stream, as when its consumer is lost
// with the server it lived on and not yet re-created: Head then lags other
// nodes' appends.
func (j *JetStream) StopTracker() { j.tracker.Stop() }
