package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/hookhouse/hookhouse/internal/api"
	"github.com/hookhouse/hookhouse/internal/warehouse"
)

// Component states (SPEC §8).
const (
	Operational = "operational"
	Degraded    = "degraded"
	Down        = "down"
)

// Status is /status.json.
type Status struct {
	Status       string              `json:"status"`
	Version      string              `json:"version"`
	Components   []Component         `json:"components"`
	Integrations []IntegrationStatus `json:"integrations,omitempty"`
	// Cluster is set in cluster mode only (cluster.go).
	// Without the admin key or a session it holds only the node's name.
	Cluster *ClusterStatus `json:"cluster,omitempty"`
}

// Component is one part's state.
type Component struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// IntegrationStatus is an integration's freshness (admin only).
type IntegrationStatus struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Schema string `json:"schema"`
	// LoaderNode is the node that loads it (cluster mode; "" if unknown).
	LoaderNode string `json:"loader_node,omitempty"`
	api.Stats
}

// Status computes the current status; details adds per-integration freshness.
func (s *Server) Status(ctx context.Context, details bool) Status {
	st := Status{Version: Version}
	st.Components = append(st.Components, Component{Name: "receiver", Status: Operational})
	logc := Component{Name: "log", Status: Operational}
	if err := s.state.Writable(); err != nil {
		logc.Status, logc.Message = Down, "the log cannot take writes: "+err.Error()
	}
	st.Components = append(st.Components, logc)
	if s.cluster != nil && s.cluster.watch != nil {
		// Stale caches are not trusted: URLs are checked against the cluster.
		if err := s.cluster.watch.Err(); err != nil {
			st.Components = append(st.Components, Component{Name: "control", Status: Degraded,
				Message: "this node may not have the latest control changes of other nodes (" + err.Error() + "); webhook URLs are checked against the cluster per request"})
		} else {
			st.Components = append(st.Components, Component{Name: "control", Status: Operational})
		}
	}
	loadc := Component{Name: "loader", Status: Operational}
	lerr, since := s.loader.LastError()
	switch {
	case !s.loader.Running():
		loadc.Status, loadc.Message = Down, "the loader is not running"
	case errors.Is(lerr, warehouse.ErrStateMismatch):
		loadc.Status, loadc.Message = Degraded, "loading is refused since "+since.UTC().Format(time.RFC3339)+
			": the warehouse's load position of an integration belongs to another installation, or is ahead of this log "+
			"(see the integration's load_error); records wait in the log"
	case lerr != nil:
		loadc.Status, loadc.Message = Degraded, "loading has been failing since "+since.UTC().Format(time.RFC3339)+"; records wait in the log"
	}
	st.Components = append(st.Components, loadc)
	whc := Component{Name: "warehouse", Status: Operational}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.wh.Ping(pctx); err != nil {
		whc.Status, whc.Message = Down, "the warehouse is unreachable; records wait in the log"
	}
	st.Components = append(st.Components, whc)
	st.Status = Operational
	for _, c := range st.Components {
		if c.Status == Down {
			st.Status = Down
		} else if c.Status == Degraded && st.Status == Operational {
			st.Status = Degraded
		}
	}
	if details {
		for _, in := range s.control.Integrations() {
			st.Integrations = append(st.Integrations, IntegrationStatus{ID: in.ID, Name: in.Name, Schema: in.Schema,
				LoaderNode: s.loaderNode(in.ID), Stats: s.apiStats(in.ID)})
		}
	}
	st.Cluster = s.clusterStatus(details)
	return st
}

func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	details := false
	if key, ok := api.BearerKey(r); ok && s.control.CheckAdminKey(key) {
		details = true
	}
	if s.hasSession(r) {
		details = true
	}
	st := s.Status(r.Context(), details)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if st.Status == Down {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(st)
}
