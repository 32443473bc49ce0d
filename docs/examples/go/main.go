// Publish to a user and read who is online, from a Go backend (standard library only).
//
//	HERALD_URL=http://127.0.0.1:8080 HERALD_API_KEY=... go run main.go [user]
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

var (
	heraldURL = envOr("HERALD_URL", "http://127.0.0.1:8080")
	apiKey    = os.Getenv("HERALD_API_KEY")
	client    = &http.Client{Timeout: 10 * time.Second}
)

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// call sends one backend API request and decodes the JSON answer into out. An error answer is a
// problem document whose `detail` says what to fix.
func call(method, path string, body any, out any) error {
	var payload io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		payload = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, heraldURL+path, payload)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var problem struct{ Detail string }
		_ = json.NewDecoder(resp.Body).Decode(&problem)
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, problem.Detail)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func main() {
	if apiKey == "" {
		log.Fatal("set HERALD_API_KEY")
	}
	user := "alice"
	if len(os.Args) > 1 {
		user = os.Args[1]
	}

	var sent struct {
		ID        string `json:"id"`
		Delivered int    `json:"delivered"`
	}
	publish := map[string]any{
		"to":    map[string]any{"users": []string{user}},
		"event": "ALERT",
		"data":  map[string]any{"text": "Hello from Go"},
	}
	if err := call("POST", "/api/publish", publish, &sent); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("published %s to %d connection(s)\n", sent.ID, sent.Delivered)

	var online struct {
		Users []struct {
			ID          string `json:"id"`
			Connections int    `json:"connections"`
		} `json:"users"`
	}
	if err := call("GET", "/api/users?limit=100", nil, &online); err != nil {
		log.Fatal(err)
	}
	names := []string{}
	for _, u := range online.Users {
		names = append(names, fmt.Sprintf("%s (%d)", u.ID, u.Connections))
	}
	if len(names) == 0 {
		names = append(names, "nobody")
	}
	fmt.Printf("online: %s\n", strings.Join(names, ", "))

	var one struct {
		ID          string            `json:"id"`
		Online      bool              `json:"online"`
		Connections []json.RawMessage `json:"connections"`
	}
	if err := call("GET", "/api/users/"+url.PathEscape(user), nil, &one); err != nil {
		log.Fatal(err)
	}
	state := "offline"
	if one.Online {
		state = "online"
	}
	fmt.Printf("%s is %s with %d connection(s)\n", one.ID, state, len(one.Connections))
}
