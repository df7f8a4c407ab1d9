package rbacrules

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

func res(verb, group, resource, sub, name string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{Verb: verb, APIGroup: group, Resource: resource, Subresource: sub, Name: name, Namespace: "ns", ResourceRequest: true}
}

func nonRes(verb, path string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{Verb: verb, Path: path}
}

func TestAllows(t *testing.T) {
	cm := rbacv1.PolicyRule{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"configmaps"}}
	named := rbacv1.PolicyRule{Verbs: []string{"get", "update"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"a"}}
	logs := rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods/log"}}
	scale := rbacv1.PolicyRule{Verbs: []string{"update"}, APIGroups: []string{"apps"}, Resources: []string{"*/scale"}}
	all := rbacv1.PolicyRule{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}
	urls := rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz", "/apis/*"}}
	anyURL := rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"*"}}
	for _, c := range []struct {
		what string
		rule rbacv1.PolicyRule
		a    authorizer.AttributesRecord
		want bool
	}{
		{"verb listed", cm, res("get", "", "configmaps", "", "x"), true},
		{"verb not listed", cm, res("delete", "", "configmaps", "", "x"), false},
		{"other group", cm, res("get", "apps", "configmaps", "", "x"), false},
		{"other resource", cm, res("get", "", "secrets", "", "x"), false},
		{"a resource does not cover its subresources", cm, res("get", "", "configmaps", "status", "x"), false},
		{"resourceNames: the name", named, res("get", "", "configmaps", "", "a"), true},
		{"resourceNames: another name", named, res("get", "", "configmaps", "", "b"), false},
		{"resourceNames: no name (list)", named, res("list", "", "configmaps", "", ""), false},
		{"resourceNames: create has no name", named, res("create", "", "configmaps", "", ""), false},
		{"subresource", logs, res("get", "", "pods", "log", "p"), true},
		{"subresource rule, main resource", logs, res("get", "", "pods", "", "p"), false},
		{"subresource rule, other subresource", logs, res("get", "", "pods", "exec", "p"), false},
		{"*/scale", scale, res("update", "apps", "deployments", "scale", "d"), true},
		{"*/scale, another subresource", scale, res("update", "apps", "deployments", "status", "d"), false},
		{"*/scale, the main resource", scale, res("update", "apps", "deployments", "", "d"), false},
		{"* covers subresources", all, res("delete", "x.example.com", "widgets", "status", "w"), true},
		{"resource rules do not grant URLs", all, nonRes("get", "/healthz"), false},
		{"URL exact", urls, nonRes("get", "/healthz"), true},
		{"URL exact only", urls, nonRes("get", "/healthz/etcd"), false},
		{"URL prefix", urls, nonRes("get", "/apis/apps/v1"), true},
		{"URL prefix needs the slash", urls, nonRes("get", "/apisx"), false},
		{"URL verb", urls, nonRes("post", "/healthz"), false},
		{"URL *", anyURL, nonRes("get", "/anything"), true},
		{"URL rules do not grant resources", anyURL, res("get", "", "pods", "", "p"), false},
	} {
		if got := Allows(c.a, &c.rule); got != c.want {
			t.Errorf("%s: Allows = %v, want %v", c.what, got, c.want)
		}
	}
}

func TestAppliesTo(t *testing.T) {
	sa := &user.DefaultInfo{Name: "system:serviceaccount:a:bot", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:a"}}
	alice := &user.DefaultInfo{Name: "alice", Groups: []string{"dev"}}
	for _, c := range []struct {
		what    string
		u       user.Info
		subject rbacv1.Subject
		ns      string
		want    bool
	}{
		{"user", alice, rbacv1.Subject{Kind: "User", Name: "alice"}, "", true},
		{"other user", alice, rbacv1.Subject{Kind: "User", Name: "bob"}, "", false},
		{"group", alice, rbacv1.Subject{Kind: "Group", Name: "dev"}, "", true},
		{"a user is not a group", alice, rbacv1.Subject{Kind: "Group", Name: "alice"}, "", false},
		{"service account", sa, rbacv1.Subject{Kind: "ServiceAccount", Name: "bot", Namespace: "a"}, "", true},
		{"service account in another namespace", sa, rbacv1.Subject{Kind: "ServiceAccount", Name: "bot", Namespace: "b"}, "", false},
		{"service account namespace defaults to the RoleBinding's", sa, rbacv1.Subject{Kind: "ServiceAccount", Name: "bot"}, "a", true},
		{"... of another namespace", sa, rbacv1.Subject{Kind: "ServiceAccount", Name: "bot"}, "b", false},
		{"a ClusterRoleBinding subject needs its namespace", sa, rbacv1.Subject{Kind: "ServiceAccount", Name: "bot"}, "", false},
		{"service account groups", sa, rbacv1.Subject{Kind: "Group", Name: "system:serviceaccounts:a"}, "", true},
	} {
		if got := AppliesTo(c.u, []rbacv1.Subject{c.subject}, c.ns); got != c.want {
			t.Errorf("%s: AppliesTo = %v, want %v", c.what, got, c.want)
		}
	}
}
