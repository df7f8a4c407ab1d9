// Package rbacrules matches requests against RBAC rules and subjects with
// kube-apiserver's semantics. It is separate from the server so that its unit
// tests (rules_test.go, run by tests/cluster/build) compile in seconds.
package rbacrules

import (
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// AppliesTo reports whether one of subjects is u. namespace is the RoleBinding's ("" for a
// ClusterRoleBinding), the default namespace of ServiceAccount subjects.
func AppliesTo(u user.Info, subjects []rbacv1.Subject, namespace string) bool {
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.UserKind:
			if s.Name == u.GetName() {
				return true
			}
		case rbacv1.GroupKind:
			if Has(u.GetGroups(), s.Name) {
				return true
			}
		case rbacv1.ServiceAccountKind:
			ns := s.Namespace
			if ns == "" {
				ns = namespace
			}
			if ns != "" && serviceaccount.MakeUsername(ns, s.Name) == u.GetName() {
				return true
			}
		}
	}
	return false
}

// Allows reports whether rule grants the request a.
func Allows(a authorizer.Attributes, rule *rbacv1.PolicyRule) bool {
	if !matchesOrStar(rule.Verbs, a.GetVerb()) {
		return false
	}
	if !a.IsResourceRequest() {
		return nonResourceURLMatches(rule.NonResourceURLs, a.GetPath())
	}
	return matchesOrStar(rule.APIGroups, a.GetAPIGroup()) &&
		resourceMatches(rule.Resources, a.GetResource(), a.GetSubresource()) &&
		resourceNameMatches(rule.ResourceNames, a.GetName())
}

func matchesOrStar(set []string, s string) bool {
	for _, v := range set {
		if v == rbacv1.VerbAll || v == s {
			return true
		}
	}
	return false
}

// resourceMatches: "*" matches everything, "pods" only pods (not pods/log),
// "pods/log" the subresource, "*/scale" the scale subresource of anything.
func resourceMatches(rules []string, resource, subresource string) bool {
	combined := resource
	if subresource != "" {
		combined = resource + "/" + subresource
	}
	for _, r := range rules {
		switch {
		case r == rbacv1.ResourceAll, r == combined:
			return true
		case subresource != "" && r == "*/"+subresource:
			return true
		}
	}
	return false
}

// resourceNameMatches: no names = every object; otherwise the request must
// name one of them (so list, watch and create never match a named rule).
func resourceNameMatches(names []string, name string) bool {
	if len(names) == 0 {
		return true
	}
	return name != "" && Has(names, name)
}

// nonResourceURLMatches: exact paths, "*" and prefixes ending in "*".
func nonResourceURLMatches(rules []string, path string) bool {
	for _, r := range rules {
		switch {
		case r == rbacv1.NonResourceAll, r == path:
			return true
		case strings.HasSuffix(r, "*") && strings.HasPrefix(path, strings.TrimSuffix(r, "*")):
			return true
		}
	}
	return false
}

// Has reports whether s is in set.
func Has(set []string, s string) bool {
	for _, v := range set {
		if v == s {
			return true
		}
	}
	return false
}
