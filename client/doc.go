/*
Package client is the Go client of the hookhouse admin API (SPEC §6): integrations,
webhook URLs, read-only SQL and the status report. The hookhouse CLI and the end-to-end
tests use it.

	c := client.New("http://localhost:8080", adminKey)
	in, err := c.CreateIntegration(ctx, client.NewIntegration{Name: "Stitch Vero", Type: "vero"})
	if err != nil {
		return err // e.g. `409 conflict: integration "x" already uses schema stitch_vero`
	}
	u, err := c.GenerateURL(ctx, in.ID)
	// u.URL is the only time the secret URL is shown.

Errors the server answers are returned as *Error, so callers can look at the status code:

	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound { … }
*/
package client
