package manifest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateObject checks what the Kubernetes API server would refuse. It
// returns errors with field paths relative to the object.
func validateObject(kind string, obj runtime.Object) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	switch o := obj.(type) {
	case *corev1.Namespace:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSLabel, meta)
	case *corev1.Pod:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validatePodSpec(&o.Spec, field.NewPath("spec"), podAny)...)
	case *appsv1.Deployment:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		spec := field.NewPath("spec")
		errs = append(errs, validateReplicas(o.Spec.Replicas, spec.Child("replicas"))...)
		errs = append(errs, validateSelectorAndTemplate(o.Spec.Selector, &o.Spec.Template, true, spec)...)
		errs = append(errs, validatePodSpec(&o.Spec.Template.Spec, spec.Child("template", "spec"), podAlways)...)
		errs = append(errs, validateDeploymentStrategy(&o.Spec.Strategy, spec.Child("strategy"))...)
		errs = append(errs, nonNegative32(o.Spec.RevisionHistoryLimit, spec.Child("revisionHistoryLimit"))...)
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(o.Spec.MinReadySeconds), spec.Child("minReadySeconds"))...)
		if v, ok := o.Annotations[AnnotationScaleDownDelay]; ok {
			if _, err := ScaleDownDelay(v); err != nil {
				errs = append(errs, field.Invalid(meta.Child("annotations").Key(AnnotationScaleDownDelay), v, err.Error()))
			}
		}
		if d := o.Spec.ProgressDeadlineSeconds; d != nil {
			errs = append(errs, nonNegative32(d, spec.Child("progressDeadlineSeconds"))...)
			if *d >= 0 && *d <= o.Spec.MinReadySeconds {
				errs = append(errs, field.Invalid(spec.Child("progressDeadlineSeconds"), *d, "must be greater than minReadySeconds"))
			}
		}
	case *appsv1.ReplicaSet:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		spec := field.NewPath("spec")
		errs = append(errs, validateReplicas(o.Spec.Replicas, spec.Child("replicas"))...)
		errs = append(errs, validateSelectorAndTemplate(o.Spec.Selector, &o.Spec.Template, true, spec)...)
		errs = append(errs, validatePodSpec(&o.Spec.Template.Spec, spec.Child("template", "spec"), podAlways)...)
	case *appsv1.DaemonSet:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		spec := field.NewPath("spec")
		errs = append(errs, validateSelectorAndTemplate(o.Spec.Selector, &o.Spec.Template, true, spec)...)
		errs = append(errs, validatePodSpec(&o.Spec.Template.Spec, spec.Child("template", "spec"), podAlways)...)
		if t := o.Spec.UpdateStrategy.Type; t != "" && t != appsv1.RollingUpdateDaemonSetStrategyType && t != appsv1.OnDeleteDaemonSetStrategyType {
			errs = append(errs, field.NotSupported(spec.Child("updateStrategy", "type"), t, []string{"RollingUpdate", "OnDelete"}))
		}
		errs = append(errs, validateDaemonSetRollingUpdate(o.Spec.UpdateStrategy.RollingUpdate, spec.Child("updateStrategy", "rollingUpdate"))...)
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(o.Spec.MinReadySeconds), spec.Child("minReadySeconds"))...)
	case *appsv1.StatefulSet:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		spec := field.NewPath("spec")
		errs = append(errs, validateReplicas(o.Spec.Replicas, spec.Child("replicas"))...)
		errs = append(errs, validateSelectorAndTemplate(o.Spec.Selector, &o.Spec.Template, true, spec)...)
		errs = append(errs, validatePodSpec(&o.Spec.Template.Spec, spec.Child("template", "spec"), podAlways)...)
		if p := o.Spec.PodManagementPolicy; p != "" && p != appsv1.OrderedReadyPodManagement && p != appsv1.ParallelPodManagement {
			errs = append(errs, field.NotSupported(spec.Child("podManagementPolicy"), p, []string{"OrderedReady", "Parallel"}))
		}
		errs = append(errs, validateStatefulSetStrategy(&o.Spec.UpdateStrategy, spec.Child("updateStrategy"))...)
		for i := range o.Spec.VolumeClaimTemplates {
			p := spec.Child("volumeClaimTemplates").Index(i)
			errs = append(errs, validateMeta(&o.Spec.VolumeClaimTemplates[i].ObjectMeta, apivalidation.NameIsDNSLabel, p.Child("metadata"))...)
			errs = append(errs, validatePVCSpec(&o.Spec.VolumeClaimTemplates[i].Spec, p.Child("spec"))...)
		}
	case *batchv1.Job:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validateJobSpec(&o.Spec, field.NewPath("spec"))...)
	case *batchv1.CronJob:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		if len(o.Name) > 52 {
			errs = append(errs, field.TooLong(meta.Child("name"), "", 52))
		}
		spec := field.NewPath("spec")
		errs = append(errs, validateSchedule(o.Spec.Schedule, spec.Child("schedule"))...)
		if p := o.Spec.ConcurrencyPolicy; p != "" && p != batchv1.AllowConcurrent && p != batchv1.ForbidConcurrent && p != batchv1.ReplaceConcurrent {
			errs = append(errs, field.NotSupported(spec.Child("concurrencyPolicy"), p, []string{"Allow", "Forbid", "Replace"}))
		}
		jt := spec.Child("jobTemplate")
		errs = append(errs, validateLabelsAnnotations(&o.Spec.JobTemplate.ObjectMeta, jt.Child("metadata"))...)
		errs = append(errs, validateJobSpec(&o.Spec.JobTemplate.Spec, jt.Child("spec"))...)
	case *corev1.Service:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNS1035Label, meta)
		errs = append(errs, validateServiceSpec(&o.Spec, field.NewPath("spec"))...)
	case *networkingv1.Ingress:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validateIngressSpec(&o.Spec, field.NewPath("spec"))...)
	case *networkingv1.IngressClass:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		if o.Spec.Controller == "" {
			errs = append(errs, field.Required(field.NewPath("spec", "controller"), ""))
		} else {
			errs = append(errs, utilvalidation.IsDomainPrefixedPath(field.NewPath("spec", "controller"), o.Spec.Controller)...)
		}
	case *corev1.ConfigMap:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validateConfigMap(o)...)
	case *corev1.Secret:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validateSecret(o)...)
	case *corev1.PersistentVolumeClaim:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validatePVCSpec(&o.Spec, field.NewPath("spec"))...)
	case *corev1.PersistentVolume:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validatePVSpec(&o.Spec, field.NewPath("spec"))...)
	case *storagev1.StorageClass:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validateStorageClass(o)...)
	case *corev1.ServiceAccount:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		for i, s := range o.Secrets {
			if s.Name == "" {
				errs = append(errs, field.Required(field.NewPath("secrets").Index(i).Child("name"), ""))
			}
		}
	case *rbacv1.Role:
		errs = validateMeta(&o.ObjectMeta, pathSegmentName, meta)
		errs = append(errs, validatePolicyRules(o.Rules, field.NewPath("rules"), true)...)
	case *rbacv1.ClusterRole:
		errs = validateMeta(&o.ObjectMeta, pathSegmentName, meta)
		errs = append(errs, validatePolicyRules(o.Rules, field.NewPath("rules"), false)...)
	case *rbacv1.RoleBinding:
		errs = validateMeta(&o.ObjectMeta, pathSegmentName, meta)
		errs = append(errs, validateBinding(o.RoleRef, o.Subjects, []string{"Role", "ClusterRole"})...)
	case *rbacv1.ClusterRoleBinding:
		errs = validateMeta(&o.ObjectMeta, pathSegmentName, meta)
		errs = append(errs, validateBinding(o.RoleRef, o.Subjects, []string{"ClusterRole"})...)
	case *networkingv1.NetworkPolicy:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validateSelector(&o.Spec.PodSelector, field.NewPath("spec", "podSelector"))...)
		for i, t := range o.Spec.PolicyTypes {
			if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
				errs = append(errs, field.NotSupported(field.NewPath("spec", "policyTypes").Index(i), t, []string{"Ingress", "Egress"}))
			}
		}
		for i, r := range o.Spec.Ingress {
			errs = append(errs, validateNetPolPorts(r.Ports, field.NewPath("spec", "ingress").Index(i).Child("ports"))...)
		}
		for i, r := range o.Spec.Egress {
			errs = append(errs, validateNetPolPorts(r.Ports, field.NewPath("spec", "egress").Index(i).Child("ports"))...)
		}
	case *policyv1.PodDisruptionBudget:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		spec := field.NewPath("spec")
		if o.Spec.MinAvailable != nil && o.Spec.MaxUnavailable != nil {
			errs = append(errs, field.Invalid(spec, "", "minAvailable and maxUnavailable cannot be both set"))
		}
		errs = append(errs, validateIntOrPercent(o.Spec.MinAvailable, spec.Child("minAvailable"))...)
		errs = append(errs, validateIntOrPercent(o.Spec.MaxUnavailable, spec.Child("maxUnavailable"))...)
		if o.Spec.Selector != nil {
			errs = append(errs, validateSelector(o.Spec.Selector, spec.Child("selector"))...)
		}
	case *autoscalingv2.HorizontalPodAutoscaler:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validateHPA(o.Spec.ScaleTargetRef.Kind, o.Spec.ScaleTargetRef.Name, o.Spec.MinReplicas, o.Spec.MaxReplicas)...)
	case *autoscalingv1.HorizontalPodAutoscaler:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validateHPA(o.Spec.ScaleTargetRef.Kind, o.Spec.ScaleTargetRef.Name, o.Spec.MinReplicas, o.Spec.MaxReplicas)...)
	case *corev1.ResourceQuota:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		errs = append(errs, validateResourceList(o.Spec.Hard, field.NewPath("spec", "hard"))...)
	case *corev1.LimitRange:
		errs = validateMeta(&o.ObjectMeta, apivalidation.NameIsDNSSubdomain, meta)
		for i, l := range o.Spec.Limits {
			p := field.NewPath("spec", "limits").Index(i)
			switch l.Type {
			case corev1.LimitTypePod, corev1.LimitTypeContainer, corev1.LimitTypePersistentVolumeClaim:
			default:
				errs = append(errs, field.NotSupported(p.Child("type"), l.Type, []string{"Pod", "Container", "PersistentVolumeClaim"}))
			}
			for _, rl := range []struct {
				name string
				list corev1.ResourceList
			}{{"max", l.Max}, {"min", l.Min}, {"default", l.Default}, {"defaultRequest", l.DefaultRequest}} {
				errs = append(errs, validateResourceList(rl.list, p.Child(rl.name))...)
			}
		}
	default:
		errs = append(errs, field.InternalError(nil, fmt.Errorf("no validation for %s", kind)))
	}
	return errs
}

// pathSegmentName is the name rule of RBAC objects: anything that can be a
// path segment.
func pathSegmentName(name string, prefix bool) []string {
	switch {
	case name == "." || name == "..":
		return []string{fmt.Sprintf("may not be '%s'", name)}
	case strings.ContainsAny(name, "/%"):
		return []string{"may not contain '/' or '%'"}
	}
	return nil
}

func validateMeta(m *metav1.ObjectMeta, nameFn apivalidation.ValidateNameFunc, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if m.Name == "" {
		if m.GenerateName != "" {
			errs = append(errs, field.Required(p.Child("name"), "generateName is not supported: a desired object needs a fixed name"))
		} else {
			errs = append(errs, field.Required(p.Child("name"), "name is required"))
		}
	} else {
		for _, msg := range nameFn(m.Name, false) {
			errs = append(errs, field.Invalid(p.Child("name"), m.Name, msg))
		}
	}
	if m.Namespace != "" {
		for _, msg := range apivalidation.ValidateNamespaceName(m.Namespace, false) {
			errs = append(errs, field.Invalid(p.Child("namespace"), m.Namespace, msg))
		}
	}
	errs = append(errs, validateLabelsAnnotations(m, p)...)
	return errs
}

func validateLabelsAnnotations(m *metav1.ObjectMeta, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, metav1validation.ValidateLabels(m.Labels, p.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(m.Annotations, p.Child("annotations"))...)
	// Both validators range over a map: order their errors so that a
	// revision's report is the same on every run.
	slices.SortStableFunc(errs, func(a, b *field.Error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}

func validateReplicas(r *int32, p *field.Path) field.ErrorList {
	return nonNegative32(r, p)
}

func nonNegative32(v *int32, p *field.Path) field.ErrorList {
	if v != nil && *v < 0 {
		return field.ErrorList{field.Invalid(p, *v, "must be greater than or equal to 0")}
	}
	return nil
}

func validateSelector(s *metav1.LabelSelector, p *field.Path) field.ErrorList {
	return metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, p)
}

// validateSelectorAndTemplate checks that a workload's selector is present,
// valid and selects its own template.
func validateSelectorAndTemplate(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, required bool, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	tp := spec.Child("template", "metadata")
	errs = append(errs, validateLabelsAnnotations(&tmpl.ObjectMeta, tp)...)
	if sel == nil {
		if required {
			errs = append(errs, field.Required(spec.Child("selector"), "apps/v1 requires spec.selector.matchLabels matching spec.template.metadata.labels"))
		}
		return errs
	}
	sp := spec.Child("selector")
	serrs := validateSelector(sel, sp)
	errs = append(errs, serrs...)
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(sp, "{}", "empty selector is invalid for a workload: it would select every pod"))
		return errs
	}
	if len(serrs) > 0 {
		return errs
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return append(errs, field.Invalid(sp, "", err.Error()))
	}
	if !s.Matches(labels.Set(tmpl.Labels)) {
		errs = append(errs, field.Invalid(tp.Child("labels"), labelString(tmpl.Labels),
			fmt.Sprintf("`selector` (%s) does not match template `labels`", s.String())))
	}
	return errs
}

func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "none"
	}
	return labels.Set(m).String()
}

func validateDeploymentStrategy(s *appsv1.DeploymentStrategy, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.Type {
	case "", appsv1.RollingUpdateDeploymentStrategyType:
	case appsv1.RecreateDeploymentStrategyType:
		if s.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(p.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), s.Type, []string{"Recreate", "RollingUpdate"}))
	}
	if ru := s.RollingUpdate; ru != nil {
		rp := p.Child("rollingUpdate")
		errs = append(errs, validateIntOrPercent(ru.MaxUnavailable, rp.Child("maxUnavailable"))...)
		errs = append(errs, validateIntOrPercent(ru.MaxSurge, rp.Child("maxSurge"))...)
		errs = append(errs, notOver100Percent(ru.MaxUnavailable, rp.Child("maxUnavailable"))...)
		// An unset field defaults to 25%: both are zero only when both are set.
		if isZero(ru.MaxUnavailable) && isZero(ru.MaxSurge) && ru.MaxUnavailable != nil && ru.MaxSurge != nil {
			errs = append(errs, field.Invalid(rp.Child("maxUnavailable"), ru.MaxUnavailable.String(), "may not be 0 when `maxSurge` is 0"))
		}
	}
	return errs
}

// validateDaemonSetRollingUpdate checks a DaemonSet's rollingUpdate as
// Kubernetes does after its defaults (maxUnavailable 1, maxSurge 0): exactly
// one of the two is not zero.
func validateDaemonSetRollingUpdate(ru *appsv1.RollingUpdateDaemonSet, p *field.Path) field.ErrorList {
	if ru == nil {
		return nil
	}
	var errs field.ErrorList
	errs = append(errs, validateIntOrPercent(ru.MaxUnavailable, p.Child("maxUnavailable"))...)
	errs = append(errs, validateIntOrPercent(ru.MaxSurge, p.Child("maxSurge"))...)
	errs = append(errs, notOver100Percent(ru.MaxUnavailable, p.Child("maxUnavailable"))...)
	hasUnavailable := ru.MaxUnavailable == nil || !isZero(ru.MaxUnavailable)
	hasSurge := !isZero(ru.MaxSurge)
	switch {
	case hasUnavailable && hasSurge:
		errs = append(errs, field.Invalid(p.Child("maxSurge"), ru.MaxSurge.String(), "may not be set when maxUnavailable is non-zero (maxUnavailable defaults to 1: set it to 0 to surge)"))
	case !hasUnavailable && !hasSurge:
		errs = append(errs, field.Required(p.Child("maxUnavailable"), "cannot be 0 when maxSurge is 0"))
	}
	return errs
}

func validateStatefulSetStrategy(s *appsv1.StatefulSetUpdateStrategy, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.Type {
	case "", appsv1.RollingUpdateStatefulSetStrategyType:
	case appsv1.OnDeleteStatefulSetStrategyType:
		if s.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(p.Child("rollingUpdate"), "only allowed for updateStrategy 'RollingUpdate'"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), s.Type, []string{"RollingUpdate", "OnDelete"}))
	}
	if ru := s.RollingUpdate; ru != nil {
		// maxUnavailable (Kubernetes' MaxUnavailableStatefulSet feature)
		// is ignored, as by an API server without the feature: one pod at
		// a time.
		errs = append(errs, nonNegative32(ru.Partition, p.Child("rollingUpdate", "partition"))...)
	}
	return errs
}

// isZero reports whether an int-or-percent is 0 (nil is).
func isZero(v *intstr.IntOrString) bool {
	if v == nil {
		return true
	}
	if v.Type == intstr.Int {
		return v.IntVal == 0
	}
	n, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
	return err == nil && n == 0
}

// notOver100Percent refuses a percentage above 100%.
func notOver100Percent(v *intstr.IntOrString, p *field.Path) field.ErrorList {
	if v == nil || v.Type != intstr.String {
		return nil
	}
	if n, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%")); err == nil && strings.HasSuffix(v.StrVal, "%") && n > 100 {
		return field.ErrorList{field.Invalid(p, v.StrVal, "must not be greater than 100%")}
	}
	return nil
}

func validateIntOrPercent(v *intstr.IntOrString, p *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return field.ErrorList{field.Invalid(p, v.IntVal, "must be greater than or equal to 0")}
		}
		return nil
	}
	if msgs := utilvalidation.IsValidPercent(v.StrVal); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(p, v.StrVal, strings.Join(msgs, "; "))}
	}
	return nil
}

func validateJobSpec(s *batchv1.JobSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, nonNegative32(s.Parallelism, p.Child("parallelism"))...)
	errs = append(errs, nonNegative32(s.Completions, p.Child("completions"))...)
	errs = append(errs, nonNegative32(s.BackoffLimit, p.Child("backoffLimit"))...)
	if s.ActiveDeadlineSeconds != nil && *s.ActiveDeadlineSeconds <= 0 {
		errs = append(errs, field.Invalid(p.Child("activeDeadlineSeconds"), *s.ActiveDeadlineSeconds, "must be greater than 0"))
	}
	if s.ManualSelector != nil && *s.ManualSelector {
		errs = append(errs, validateSelectorAndTemplate(s.Selector, &s.Template, true, p)...)
	} else {
		errs = append(errs, validateLabelsAnnotations(&s.Template.ObjectMeta, p.Child("template", "metadata"))...)
		if s.Selector != nil {
			errs = append(errs, field.Invalid(p.Child("selector"), "", "`selector` will be auto-generated: remove it, or set spec.manualSelector: true"))
		}
	}
	errs = append(errs, validatePodSpec(&s.Template.Spec, p.Child("template", "spec"), podJob)...)
	return errs
}

// validateSchedule checks the shape of a cron schedule: five fields or a
// predefined "@" schedule, optionally after CRON_TZ= or TZ=.
func validateSchedule(s string, p *field.Path) field.ErrorList {
	if s == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	f := strings.Fields(s)
	if len(f) > 0 && (strings.HasPrefix(f[0], "CRON_TZ=") || strings.HasPrefix(f[0], "TZ=")) {
		return field.ErrorList{field.Invalid(p, s, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")}
	}
	if len(f) == 1 && strings.HasPrefix(f[0], "@") {
		switch f[0] {
		case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly":
			return nil
		}
		return field.ErrorList{field.Invalid(p, s, "unknown predefined schedule")}
	}
	if len(f) != 5 {
		return field.ErrorList{field.Invalid(p, s, fmt.Sprintf("expected exactly 5 fields, found %d", len(f)))}
	}
	for _, x := range f {
		for _, c := range x {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.ContainsRune("*/,-?", c)) {
				return field.ErrorList{field.Invalid(p, s, fmt.Sprintf("invalid character %q", c))}
			}
		}
	}
	return nil
}

func validateHPA(kind, name string, minR *int32, maxR int32) field.ErrorList {
	var errs field.ErrorList
	ref := field.NewPath("spec", "scaleTargetRef")
	if kind == "" {
		errs = append(errs, field.Required(ref.Child("kind"), ""))
	}
	if name == "" {
		errs = append(errs, field.Required(ref.Child("name"), ""))
	}
	if maxR < 1 {
		errs = append(errs, field.Invalid(field.NewPath("spec", "maxReplicas"), maxR, "must be greater than or equal to 1"))
	}
	if minR != nil && *minR > maxR {
		errs = append(errs, field.Invalid(field.NewPath("spec", "minReplicas"), *minR, "must be less than or equal to maxReplicas"))
	}
	return errs
}

func validatePolicyRules(rules []rbacv1.PolicyRule, p *field.Path, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	for i, r := range rules {
		rp := p.Index(i)
		if len(r.Verbs) == 0 {
			errs = append(errs, field.Required(rp.Child("verbs"), "verbs must contain at least one value"))
		}
		if len(r.NonResourceURLs) > 0 {
			if namespaced {
				errs = append(errs, field.Invalid(rp.Child("nonResourceURLs"), r.NonResourceURLs, "namespaced rules cannot apply to non-resource URLs"))
			}
			continue
		}
		if len(r.APIGroups) == 0 || len(r.Resources) == 0 && len(r.ResourceNames) == 0 {
			errs = append(errs, field.Required(rp.Child("apiGroups"), "resource rules must supply at least one api group and one resource"))
		}
	}
	return errs
}

func validateBinding(ref rbacv1.RoleRef, subjects []rbacv1.Subject, kinds []string) field.ErrorList {
	var errs field.ErrorList
	rp := field.NewPath("roleRef")
	if ref.APIGroup != rbacv1.GroupName {
		errs = append(errs, field.NotSupported(rp.Child("apiGroup"), ref.APIGroup, []string{rbacv1.GroupName}))
	}
	ok := false
	for _, k := range kinds {
		ok = ok || ref.Kind == k
	}
	if !ok {
		errs = append(errs, field.NotSupported(rp.Child("kind"), ref.Kind, kinds))
	}
	if ref.Name == "" {
		errs = append(errs, field.Required(rp.Child("name"), ""))
	}
	for i, s := range subjects {
		sp := field.NewPath("subjects").Index(i)
		switch s.Kind {
		case rbacv1.ServiceAccountKind, rbacv1.UserKind, rbacv1.GroupKind:
		default:
			errs = append(errs, field.NotSupported(sp.Child("kind"), s.Kind, []string{"ServiceAccount", "User", "Group"}))
		}
		if s.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), ""))
		}
	}
	return errs
}

func validateNetPolPorts(ports []networkingv1.NetworkPolicyPort, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, port := range ports {
		pp := p.Index(i)
		if port.Protocol != nil {
			errs = append(errs, validateProtocol(*port.Protocol, pp.Child("protocol"))...)
		}
		if port.Port != nil {
			errs = append(errs, validatePortNumOrName(*port.Port, pp.Child("port"))...)
		}
	}
	return errs
}
