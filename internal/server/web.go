package server

import "net/http"

// registerWeb adds the dashboard and /status pages (internal/web).
func (s *Server) registerWeb(mux *http.ServeMux) {}

// hasSession reports whether r carries a dashboard session.
func (s *Server) hasSession(r *http.Request) bool { return false }
