from django.urls import path

from todos import views

urlpatterns = [
    path("", views.home),
    path("lists/<int:list_id>/", views.TodoPage.as_view(), name="list"),
    path("api/lists/", views.ListsAPI.as_view()),
    path("api/lists/<int:list_id>/todos/", views.TodosAPI.as_view()),
    path("api/lists/<int:list_id>/toggle-all/", views.ToggleAllAPI.as_view()),
    path("api/lists/<int:list_id>/clear-completed/", views.ClearCompletedAPI.as_view()),
    path("api/todos/<int:pk>/", views.TodoAPI.as_view()),
]
